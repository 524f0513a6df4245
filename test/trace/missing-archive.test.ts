/**
 * Archives that are gone or cannot be read (found by an audit: with the middle archive deleted,
 * trace answered FOUND from the one before it for a time the deleted ruleset was active; a
 * compressed archive cut short made every trace and a whole batch fail with exit 2). The
 * chain says what is missing: each archive's header names the one before it, and the state
 * file anchors the newest. A moment a missing ruleset may have covered has no certain answer
 * (`archive-missing`); an unreadable archive is a damaged candidate (`archive-damaged`), and
 * the answers around it stand. The applies run against a fake nat table; trace reads the files.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { ApplyResult } from '../../src/apply/apply.js';
import { parseIpv4 } from '../../src/net/ipv4.js';
import type { TraceResult } from '../../src/trace/trace.js';
import { FakeNatTable } from '../helpers/fake-nat-table.js';
import { createFakeSite, type FakeSite } from '../helpers/fake-site.js';
import { ALPHA, DELTA, GAMMA } from '../helpers/profiles.js';

const T0 = Date.parse('2026-12-07T12:00:00Z') / 1000;
const HOUR = 3600;
const NOW = T0 + 10 * HOUR;

let site: FakeSite;
/** Three activations an hour apart: ALPHA; ALPHA and GAMMA; ALPHA, GAMMA and DELTA. */
let applied: ApplyResult[];

beforeEach(async () => {
  site = createFakeSite(new FakeNatTable(), T0 * 1000);
  applied = [];
  for (const [hour, profiles] of [[ALPHA], [ALPHA, GAMMA], [ALPHA, GAMMA, DELTA]].entries()) {
    site.clock.ms = (T0 + hour * HOUR) * 1000;
    site.sandbox.writeProfiles(profiles);
    applied.push(await site.apply());
  }
});

afterEach(() => {
  site.sandbox.remove();
});

function archivePath(index: number): string {
  const path = applied[index]?.archive?.path;
  if (path === undefined) throw new Error(`apply ${String(index)} wrote no archive`);
  return path;
}

/** A trace of `client`'s port in the ruleset of apply `index`, at `at`. */
function traceClient(client: string, index: number, at: number): TraceResult {
  const block = applied[index]?.plan.map.forward(parseIpv4(client) ?? 0);
  if (!block) throw new Error(`${client} has no block in apply ${String(index)}`);
  return site.trace({ at, port: block.firstPort, address: block.publicAddress, now: NOW });
}

const codes = (result: TraceResult) => result.notes.map((note) => note.code);
const clients = (result: TraceResult) => result.candidates.map((candidate) => candidate.client);

test('with every archive there, each hour has its one answer and no doubt', () => {
  const alpha = traceClient('10.42.0.2', 0, T0 + HOUR / 2);
  expect(alpha.status).toBe('found');
  expect(codes(alpha)).not.toContain('archive-missing');
  const gamma = traceClient('10.42.2.2', 1, T0 + HOUR + HOUR / 2);
  expect(gamma.status).toBe('found');
  expect(clients(gamma)).toEqual([parseIpv4('10.42.2.2')]);
});

describe('the middle archive deleted', () => {
  beforeEach(() => {
    rmSync(archivePath(1));
  });

  test('its hour is no "port in no block" from the archive before it', () => {
    const result = traceClient('10.42.2.2', 1, T0 + HOUR + HOUR / 2);
    expect(result.status).toBe('ambiguous');
    expect(codes(result)).toContain('archive-missing');
    const note = result.notes.find((each) => each.code === 'archive-missing');
    expect(note?.message).toContain(`${String(T0 + HOUR)}.gz, a ruleset archived after`);
  });

  test('nor a confident answer of the archive before it, from its activation on', () => {
    for (const at of [T0 + HOUR + HOUR / 2, T0 + HOUR / 2]) {
      const result = traceClient('10.42.0.2', 0, at);
      expect(result.status).toBe('ambiguous');
      expect(clients(result)).toEqual([parseIpv4('10.42.0.2')]);
      expect(codes(result)).toContain('archive-missing');
    }
  });

  test('the hour of the archive after it stands', () => {
    const result = traceClient('10.42.2.2', 2, T0 + 2 * HOUR + HOUR / 2);
    expect(result.status).toBe('found');
    expect(codes(result)).not.toContain('archive-missing');
  });
});

test('the anchored newest archive deleted: no answer after the one before it is certain', () => {
  rmSync(archivePath(2));
  const result = traceClient('10.42.0.2', 1, T0 + 2 * HOUR + HOUR / 2);
  expect(result.status).toBe('ambiguous');
  expect(codes(result)).toContain('archive-missing');
});

test('the newest archive deleted, then an apply forced over the mismatch: its hour stays in doubt', async () => {
  rmSync(archivePath(2));
  site.clock.ms = (T0 + 3 * HOUR) * 1000;
  site.sandbox.writeProfiles([ALPHA]);
  await expect(site.apply()).rejects.toMatchObject({ code: 'E_ARCHIVE' });
  const forced = await site.apply({ force: true });
  expect(forced.outcome).toBe('applied');
  // DELTA had a block only in the deleted ruleset: not "no client's" for its hour.
  const delta = traceClient('10.42.3.2', 2, T0 + 2 * HOUR + HOUR / 2);
  expect(delta.status).toBe('ambiguous');
  const note = delta.notes.find((each) => each.code === 'archive-missing');
  expect(note?.message).toContain('was applied with --force over an anchor mismatch');
  // After the forced apply, its own ruleset answers.
  expect(traceClient('10.42.0.2', 0, T0 + 3 * HOUR + HOUR / 2).status).toBe('found');
});

test('every archive deleted while the state file anchors one: no plain "no archives"', () => {
  for (const index of [0, 1, 2]) rmSync(archivePath(index));
  const result = traceClient('10.42.0.2', 2, T0 + 2 * HOUR + HOUR / 2);
  expect(result.status).toBe('ambiguous');
  expect(codes(result)).toEqual(['archive-missing']);
});

test('the first archive deleted: a time before the next is no "before the first archive"', () => {
  rmSync(archivePath(0));
  const result = traceClient('10.42.0.2', 0, T0 + HOUR / 2);
  expect(result.status).toBe('ambiguous');
  expect(codes(result)).toEqual(['archive-missing']);
  expect(result.notes[0]?.message).toContain(`names rules.v4.${String(T0)}.gz as the ruleset`);
});

describe('the middle archive cut short (a compressed file)', () => {
  beforeEach(() => {
    const path = archivePath(1);
    const bytes = readFileSync(path);
    writeFileSync(path, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
  });

  test('its hour is ambiguous and says why, instead of failing the trace', () => {
    const result = traceClient('10.42.2.2', 1, T0 + HOUR + HOUR / 2);
    expect(result.status).toBe('ambiguous');
    expect(codes(result)).toContain('archive-damaged');
    const note = result.notes.find((each) => each.code === 'archive-damaged');
    expect(note?.message).toContain('is not a complete gzip file');
  });

  test('the hours before and after it stand', () => {
    expect(traceClient('10.42.0.2', 0, T0 + HOUR / 2).status).toBe('found');
    expect(traceClient('10.42.2.2', 2, T0 + 2 * HOUR + HOUR / 2).status).toBe('found');
  });
});
