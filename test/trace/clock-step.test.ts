/**
 * A wall clock stepped between two applies of one boot (found by an audit: an archive made
 * while the clock ran an hour ahead, traced once its name was no longer in the future, was
 * taken at its name, and a port only its ruleset handed out in the hour before came back as no
 * client's). Each archive header records the boot clock with the apply's start; where the two
 * clocks moved apart between two archives, the switch between them may lie that far from the
 * names, and trace gives both answers. The applies run against a fake nat table.
 */
import type { ApplyResult } from '../../src/apply/apply.js';
import { parseArchiveHeader } from '../../src/archive/header.js';
import { readArchiveHeader } from '../../src/archive/store.js';
import { parseArchiveName } from '../../src/archive/names.js';
import { basename, dirname } from 'node:path';
import { parseIpv4 } from '../../src/net/ipv4.js';
import type { TraceResult } from '../../src/trace/trace.js';
import { FakeNatTable } from '../helpers/fake-nat-table.js';
import { createFakeSite, type FakeSite } from '../helpers/fake-site.js';
import { ALPHA, GAMMA } from '../helpers/profiles.js';

const T0 = Date.parse('2026-12-07T12:00:00Z') / 1000;
const HOUR = 3600;

let site: FakeSite;
let second: ApplyResult;

beforeEach(() => {
  site = createFakeSite(new FakeNatTable(), T0 * 1000);
});

afterEach(() => {
  site.sandbox.remove();
});

/** ALPHA at T0; `gap` seconds later, the wall clock stepped by `step`, ALPHA and GAMMA. */
async function twoApplies(step: number, gap = 300): Promise<void> {
  site.sandbox.writeProfiles([ALPHA]);
  await site.apply();
  site.clock.ms += gap * 1000;
  site.clock.step(step * 1000);
  site.sandbox.writeProfiles([ALPHA, GAMMA]);
  second = await site.apply();
  // Put right again.
  site.clock.step(-step * 1000);
}

function traceGamma(at: number): TraceResult {
  const block = second.plan.map.forward(parseIpv4('10.42.2.2') ?? 0);
  if (!block) throw new Error('GAMMA has no block');
  const now = T0 + 10 * HOUR;
  return site.trace({ at, port: block.firstPort, address: block.publicAddress, now });
}

const codes = (result: TraceResult) => result.notes.map((note) => note.code);

test('each archive header records the boot clock with its apply start', async () => {
  await twoApplies(0);
  const path = second.archive?.path ?? '';
  const entry = parseArchiveName(basename(path));
  if (!entry) throw new Error(`${path} is no archive name`);
  expect(parseArchiveHeader(readArchiveHeader(dirname(path), entry))?.clock).toEqual({
    boot: 'a-test-boot',
    seconds: expect.any(Number) as number,
  });
});

test('the clock an hour ahead at the second apply: the hour before its name has both answers', async () => {
  await twoApplies(HOUR);
  expect(second.archive?.path).toMatch(new RegExp(`rules\\.v4\\.${String(T0 + HOUR + 302)}\\.gz$`));
  // Really made 5 minutes after the first: GAMMA's port was GAMMA's from then on.
  const result = traceGamma(T0 + 600);
  expect(result.status).toBe('ambiguous');
  expect(result.candidates.map((candidate) => candidate.client)).toEqual([parseIpv4('10.42.2.2')]);
  expect(codes(result)).toContain('clock-stepped');
  const note = result.notes.find((each) => each.code === 'clock-stepped');
  expect(note?.message).toContain(`stepped by ${String(HOUR)} s before the apply of`);
  // Long after the name, the second archive alone answers.
  expect(traceGamma(T0 + 3 * HOUR).status).toBe('found');
});

test('the clock an hour behind at the second apply: the hour after its name has both answers', async () => {
  await twoApplies(-HOUR, 2 * HOUR + 300);
  // Really made at T0 + 2 h 5 min 2 s.
  const named = T0 + HOUR + 302;
  expect(second.archive?.path).toMatch(new RegExp(`rules\\.v4\\.${String(named)}\\.gz$`));
  // The first ruleset may have lasted until an hour after the name.
  const result = traceGamma(named + HOUR / 2);
  expect(result.status).toBe('ambiguous');
  expect(codes(result)).toContain('clock-stepped');
});

test('wall and boot clock moving alike, however long between the applies, is no step', async () => {
  site.sandbox.writeProfiles([ALPHA]);
  await site.apply();
  site.clock.ms += 5 * HOUR * 1000;
  site.sandbox.writeProfiles([ALPHA, GAMMA]);
  second = await site.apply();
  const result = traceGamma(T0 + HOUR);
  expect(result.status).toBe('not-found');
  expect(codes(result)).not.toContain('clock-stepped');
});
