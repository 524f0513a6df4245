/**
 * Issue 11: trace must not answer with confidence from an archive that is not what was
 * archived (a middle archive cut by a full disk or edited, a newest archive that no longer
 * matches the state file's anchor), and must give both answers while an interrupted apply's
 * pending ruleset may or may not be active. Pure: archives in memory, no kernel.
 */
import { sha256 } from '../../src/archive/header.js';
import { parseIpv4 } from '../../src/net/ipv4.js';
import { traceArchives } from '../../src/trace/trace.js';
import type { ArchiveDir } from '../../src/trace/timeline.js';
import { archiveFiles, memoryDir, type ArchiveSpec } from '../trace/archive-fixtures.js';

const A = '192.0.2.1';
const T0 = 1_700_000_000;
const SPECS: ArchiveSpec[] = [
  { at: T0, form: 'iptables', rows: [['10.0.0.2', A, 65280, 65535]] },
  { at: T0 + 3600, form: 'iptables', rows: [['10.0.0.3', A, 65280, 65535]] },
  { at: T0 + 7200, form: 'iptables', rows: [['10.0.0.4', A, 65280, 65535]] },
];

function dirWith(change: (files: Map<string, string>) => void, extra: Partial<ArchiveDir> = {}) {
  const files = archiveFiles(SPECS);
  change(files);
  return { ...memoryDir('/archive', files), ...extra };
}

const at = (seconds: number) => ({ at: seconds, port: 65300, address: parseIpv4(A) });
const name = (seconds: number) => `rules.v4.${seconds}`;

describe('trace and damaged archives', () => {
  test('intact archives: found', () => {
    const result = traceArchives([dirWith(() => undefined)], at(T0 + 1800 + 3600));
    expect(result.status).toBe('found');
    expect(result.notes).toEqual([]);
  });

  test('a middle archive cut short (no COMMIT) is no confident answer', () => {
    const dir = dirWith((files) => {
      const text = files.get(name(T0 + 3600)) ?? '';
      files.set(name(T0 + 3600), text.slice(0, text.lastIndexOf('COMMIT')));
    });
    const result = traceArchives([dir], at(T0 + 3600 + 1800));
    expect(result.status).toBe('ambiguous');
    expect(result.notes.map((note) => note.code)).toContain('archive-damaged');
    expect(result.notes.find((note) => note.code === 'archive-damaged')?.message).toMatch(
      /rules\.v4\.1700003600 is not what was archived: rules\.v4\.1700007200 recorded its SHA-256/,
    );
  });

  test('a middle archive edited to name another client is no confident answer', () => {
    const dir = dirWith((files) => {
      files.set(
        name(T0 + 3600),
        (files.get(name(T0 + 3600)) ?? '').replaceAll('10.0.0.3', '10.0.0.9'),
      );
    });
    const result = traceArchives([dir], at(T0 + 3600 + 1800));
    expect(result.candidates.map((candidate) => candidate.client)).toEqual([parseIpv4('10.0.0.9')]);
    expect(result.status).toBe('ambiguous');
  });

  test('the newest archive against the state anchor', () => {
    const files = archiveFiles(SPECS);
    const newest = files.get(name(T0 + 7200)) ?? '';
    const anchored = { name: name(T0 + 7200), sha256: sha256(newest) };
    const intact = { ...memoryDir('/archive', files), anchor: anchored };
    expect(traceArchives([intact], at(T0 + 9000)).status).toBe('found');
    const edited = dirWith(
      (changed) => {
        changed.set(name(T0 + 7200), newest.replaceAll('10.0.0.4', '10.0.0.8'));
      },
      { anchor: anchored },
    );
    const result = traceArchives([edited], at(T0 + 9000));
    expect(result.status).toBe('ambiguous');
    expect(result.notes.find((note) => note.code === 'archive-damaged')?.message).toMatch(
      /the state file anchors it/,
    );
  });

  test('an interrupted apply: both answers from its start on, and the older alone before', () => {
    const pendingText =
      archiveFiles([
        { at: T0 + 9000, took: 2, form: 'iptables', rows: [['10.0.0.5', A, 65280, 65535]] },
      ]).get(name(T0 + 9000)) ?? '';
    const pending = {
      entry: { name: 'rules.v4.pending', backend: 'iptables' as const, activatedAt: Infinity },
      text: pendingText,
    };
    const dir = dirWith(() => undefined, { pending });
    const after = traceArchives([dir], at(T0 + 9100));
    expect(after.candidates.map((candidate) => candidate.client).sort()).toEqual(
      [parseIpv4('10.0.0.4'), parseIpv4('10.0.0.5')].sort(),
    );
    expect(after.status).toBe('ambiguous');
    expect(after.notes.map((note) => note.code)).toContain('apply-interrupted');
    const before = traceArchives([dir], at(T0 + 8000));
    expect(before.status).toBe('found');
    expect(before.candidates.map((candidate) => candidate.client)).toEqual([parseIpv4('10.0.0.4')]);
  });
});
