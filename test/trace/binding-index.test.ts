/**
 * Issue 15: the binding index beside an archive may only make a trace faster, never change its
 * answer. Every case below breaks the index (another archive's, cut, naming another digest, an
 * archive edited after it was written, none at all) and checks that trace answers exactly as
 * it does from the archives' text alone, and whether the index was used or refused.
 */
import {
  chmodSync,
  copyFileSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import {
  bindingIndexName,
  bindingsOfText,
  encodeBindingIndex,
} from '../../src/archive/binding-index.js';
import { sha256 } from '../../src/archive/header.js';
import { writeBindingIndex } from '../../src/archive/index-file.js';
import { parseArchiveName } from '../../src/archive/names.js';
import { readArchiveForTrace } from '../../src/archive/store.js';
import { archiveDirOf } from '../../src/cli/trace-sources.js';
import { parseConfig } from '../../src/config.js';
import { formatAddress, type Address } from '../../src/net/address.js';
import { parseIpv4 } from '../../src/net/ipv4.js';
import { lookupClientAt } from '../../src/trace/lookup-at.js';
import type { ArchiveDir } from '../../src/trace/timeline.js';
import { traceArchives, type TraceQuery, type TraceResult } from '../../src/trace/trace.js';
import { ip6 } from '../mapping/fixtures6.js';
import { treeMap6 } from '../render/maps6.js';
import { archiveFiles, type ArchiveSpec } from './archive-fixtures.js';
import { writeActivations } from './archive6-fixtures.js';

const CONFIG = parseConfig(
  'nat:\n  publicAddresses: [192.0.2.1]\n  outInterface: eth0\nfirewall:\n  archiveDir: /nonexistent/archive\n',
  'test.yaml',
);
const A = '192.0.2.1';
const B = '192.0.2.2';
const T0 = 1_700_000_000;
const SPECS: ArchiveSpec[] = [
  {
    at: T0,
    form: 'iptables',
    rows: [
      ['10.0.0.2', A, 65280, 65535],
      ['10.0.0.3', B, 65280, 65535],
    ],
  },
  {
    at: T0 + 3600,
    form: 'iptables',
    rows: [
      ['10.0.0.4', A, 65280, 65535],
      ['10.0.0.5', A, 65024, 65279],
    ],
  },
  { at: T0 + 7200, form: 'nft', rows: [['10.0.0.6', A, 65280, 65535]] },
];
const NAMES = [...archiveFiles(SPECS).keys()];
const MIDDLE = NAMES[1] ?? '';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tnat-index-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** The archives as the store keeps them (gzip), each with the index a commit writes. */
function writeArchives(): void {
  for (const [name, text] of archiveFiles(SPECS)) {
    const bytes = gzipSync(text);
    writeFileSync(join(dir, name), bytes, { mode: 0o440 });
    writeBindingIndex(dir, name, sha256(bytes), bindingsOfText(text));
  }
}

const indexPath = (name: string) => join(dir, bindingIndexName(name));

/** The directory as trace reads it, and as it would without ever looking at an index. */
function withIndex(): ArchiveDir {
  return archiveDirOf(dir, CONFIG);
}
function withoutIndex(): ArchiveDir {
  return { ...archiveDirOf(dir, CONFIG), readForTrace: undefined, keepIndex: undefined };
}

function usesIndex(name: string): boolean {
  const entry = parseArchiveName(name);
  if (!entry) throw new Error(name);
  return readArchiveForTrace(dir, entry).bindings !== undefined;
}

/** Everything a trace answers, as plain values (the archives' functions left out). */
function answer(result: TraceResult) {
  return {
    status: result.status,
    notes: result.notes,
    archives: result.archives.map((archive) => ({
      name: archive.entry.name,
      ours: archive.ours,
      applyStartedAt: archive.applyStartedAt,
      damaged: archive.damaged,
      publicAddresses: archive.publicAddresses.map(formatAddress),
    })),
    candidates: result.candidates.map((candidate) => ({
      client: formatAddress(candidate.client),
      matches: candidate.matches.map(({ archive, assignment }) => ({
        archive: archive.entry.name,
        ...assignment,
        client: formatAddress(assignment.client),
        publicAddress: formatAddress(assignment.publicAddress),
      })),
    })),
  };
}

/** Queries over every archive, a switch, both addresses, no address, a port in no block. */
const QUERIES: TraceQuery[] = [T0 + 1800, T0 + 3600, T0 + 5400, T0 + 7200, T0 + 9000].flatMap(
  (at) =>
    [undefined, parseIpv4(A), parseIpv4(B)].flatMap((address) =>
      [65300, 65100, 1024].map((port) => ({ at, address, port })),
    ),
);

function expectSameAnswers(): void {
  for (const query of QUERIES) {
    expect(answer(traceArchives([withIndex()], query))).toEqual(
      answer(traceArchives([withoutIndex()], query)),
    );
  }
}

describe('the binding index', () => {
  test('intact: used, and every answer is the one from the text', () => {
    writeArchives();
    expect(NAMES.every(usesIndex)).toBe(true);
    expectSameAnswers();
    const client = parseIpv4('10.0.0.5') ?? 0;
    const lookup = (archives: ArchiveDir) =>
      lookupClientAt([archives], client, T0 + 5400).matches.map((match) => match.assignment);
    expect(lookup(withIndex())).toEqual(lookup(withoutIndex()));
  });

  test('is compact: far smaller than its archive', () => {
    writeArchives();
    for (const name of NAMES) {
      expect(readFileSync(indexPath(name)).length).toBeLessThan(2048);
    }
  });

  test('the index of another archive is refused', () => {
    writeArchives();
    chmodSync(indexPath(MIDDLE), 0o640);
    copyFileSync(indexPath(NAMES[0] ?? ''), indexPath(MIDDLE));
    expect(usesIndex(MIDDLE)).toBe(false);
    expectSameAnswers();
  });

  test.each([1, 20, 100, -1])('an index cut to %i bytes (or one short) is refused', (length) => {
    writeArchives();
    const bytes = readFileSync(indexPath(MIDDLE));
    chmodSync(indexPath(MIDDLE), 0o640);
    writeFileSync(indexPath(MIDDLE), bytes.subarray(0, length < 0 ? bytes.length - 1 : length));
    expect(usesIndex(MIDDLE)).toBe(false);
    expectSameAnswers();
  });

  test('an index naming another digest of the archive is refused', () => {
    writeArchives();
    const text = archiveFiles(SPECS).get(MIDDLE) ?? '';
    const forged = encodeBindingIndex(MIDDLE, sha256('another archive'), bindingsOfText(text));
    chmodSync(indexPath(MIDDLE), 0o640);
    writeFileSync(indexPath(MIDDLE), forged ?? '');
    expect(usesIndex(MIDDLE)).toBe(false);
    expectSameAnswers();
  });

  test('an index whose bindings were altered (its own SHA-256 kept) is refused', () => {
    writeArchives();
    const bytes = Buffer.from(readFileSync(indexPath(MIDDLE)));
    bytes[bytes.length - 5] = (bytes[bytes.length - 5] ?? 0) ^ 0xff;
    chmodSync(indexPath(MIDDLE), 0o640);
    writeFileSync(indexPath(MIDDLE), bytes);
    expect(usesIndex(MIDDLE)).toBe(false);
    expectSameAnswers();
  });

  test('an archive edited after its index was written: the edit is read, and damaged', () => {
    writeArchives();
    const text = archiveFiles(SPECS).get(MIDDLE) ?? '';
    chmodSync(join(dir, MIDDLE), 0o640);
    writeFileSync(join(dir, MIDDLE), gzipSync(text.replaceAll('10.0.0.4', '10.0.0.9')));
    expect(usesIndex(MIDDLE)).toBe(false);
    expectSameAnswers();
    const result = traceArchives([withIndex()], { at: T0 + 5400, port: 65300 });
    expect(result.candidates.map((candidate) => formatAddress(candidate.client))).toEqual([
      '10.0.0.9',
    ]);
    expect(result.notes.map((note) => note.code)).toContain('archive-damaged');
  });

  test('no index (archives older than indexes): the same answers, and trace writes one', () => {
    writeArchives();
    for (const name of NAMES) unlinkSync(indexPath(name));
    expect(NAMES.some(usesIndex)).toBe(false);
    expectSameAnswers();
    // The trace above read the archives of those moments and left an index beside each.
    expect(NAMES.every(usesIndex)).toBe(true);
    expectSameAnswers();
  });

  test('a directory that cannot be written: the same answers, nothing written', () => {
    writeArchives();
    for (const name of NAMES) unlinkSync(indexPath(name));
    const dirOf = withIndex();
    const unwritable: ArchiveDir = { ...dirOf, keepIndex: () => undefined };
    for (const query of QUERIES) {
      expect(answer(traceArchives([unwritable], query))).toEqual(
        answer(traceArchives([withoutIndex()], query)),
      );
    }
    expect(NAMES.some(usesIndex)).toBe(false);
  });
});

describe('the binding index and IPv6', () => {
  const PUBLIC = ip6('2001:db8::1');
  const ROWS = [['10.87.12.2', A, 65472, 65535]] as const;

  test.each(['iptables', 'nftables'] as const)(
    '%s: an IPv6 trace answers as from the text (the index holds the IPv4 bindings)',
    (backend) => {
      const T1 = 1_780_000_000;
      const names = writeActivations(dir, [
        { at: T1, backend, rows: ROWS, map6: treeMap6() },
        { at: T1 + 3600, backend, rows: ROWS },
      ]);
      const archives = names.filter((name) => parseArchiveName(name) !== undefined);
      expect(archives.length).toBe(2);
      expect(archives.every(usesIndex)).toBe(true);
      const queries: { at: number; address: Address; port?: number }[] = [
        T1 + 1800,
        T1 + 3600,
        T1 + 5400,
      ].flatMap((at) => [
        { at, address: PUBLIC, port: 65535 },
        { at, address: PUBLIC, port: 40000 },
        { at, address: PUBLIC },
        { at, address: parseIpv4(A) ?? 0, port: 65500 },
      ]);
      for (const query of queries) {
        expect(answer(traceArchives([withIndex()], query))).toEqual(
          answer(traceArchives([withoutIndex()], query)),
        );
      }
    },
  );
});
