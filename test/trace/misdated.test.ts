/**
 * An apply made while the clock ran ahead names its archive after that clock. Once the clock is
 * put right, the archive is dated in the future, and its name does not say when its ruleset
 * became active: trace must not answer from the archive before it alone (a port only the new
 * ruleset hands out would be "no client's"), but give both answers from the archive before it
 * on, and say why. The applies run against a fake nat table; trace reads the real files.
 */
import type { ApplyResult } from '../../src/apply/apply.js';
import { parseIpv4 } from '../../src/net/ipv4.js';
import type { TraceResult } from '../../src/trace/trace.js';
import { FakeNatTable } from '../helpers/fake-nat-table.js';
import { ALPHA, GAMMA } from '../helpers/profiles.js';
import { createFakeSite, type FakeSite } from '../helpers/fake-site.js';

const T0 = Date.parse('2026-12-07T12:00:00Z') / 1000;
/** How far the clock ran ahead during the second apply. */
const AHEAD = 3600;

let site: FakeSite;

beforeEach(() => {
  site = createFakeSite(new FakeNatTable(), T0 * 1000);
});

afterEach(() => {
  site.sandbox.remove();
});

async function apply(): Promise<ApplyResult> {
  return site.apply();
}

/** Where `client` leaves in `result`'s ruleset. */
function blockOf(result: ApplyResult, client: string) {
  const found = result.plan.map.forward(parseIpv4(client) ?? 0);
  if (!found) throw new Error(`${client} has no block`);
  return found;
}

function trace(at: number, port: number, address: number, now: number): TraceResult {
  return site.trace({ at, port, address, now });
}

const clients = (result: TraceResult) => result.candidates.map((candidate) => candidate.client);

describe('an archive made while the clock ran an hour ahead, traced once it is right again', () => {
  let first: ApplyResult;
  let second: ApplyResult;
  const now = T0 + 600;

  beforeEach(async () => {
    site.sandbox.writeProfiles([ALPHA]);
    first = await apply();
    site.clock.ms = (T0 + AHEAD) * 1000;
    site.sandbox.writeProfiles([ALPHA, GAMMA]);
    second = await apply();
    expect(second.archive?.path).toMatch(new RegExp(`rules\\.v4\\.${String(T0 + AHEAD)}\\.gz$`));
  });

  test('a port only its ruleset hands out: not "no client\'s", but both answers, and why', () => {
    const gamma = blockOf(second, '10.42.2.2');
    const result = trace(T0 + 300, gamma.firstPort, gamma.publicAddress, now);
    expect(result.status).toBe('ambiguous');
    expect(clients(result)).toEqual([parseIpv4('10.42.2.2')]);
    expect(result.notes.map((note) => note.code)).toContain('archive-misdated');
    const note = result.notes.find((each) => each.code === 'archive-misdated');
    expect(note?.message).toContain('the clock was ahead when it was archived');
    expect(note?.message).toContain('at any moment since 2026-12-07T12:00:00Z');
  });

  test('a client both rulesets place alike is found, with the note', () => {
    const alpha = blockOf(first, '10.42.0.2');
    expect(blockOf(second, '10.42.0.2')).toMatchObject({
      firstPort: alpha.firstPort,
      publicAddress: alpha.publicAddress,
    });
    const result = trace(T0 + 300, alpha.firstPort, alpha.publicAddress, now);
    expect(result.status).toBe('found');
    expect(clients(result)).toEqual([parseIpv4('10.42.0.2')]);
    expect(result.notes.map((note) => note.code)).toContain('archive-misdated');
  });

  test('before the archive before it, it plays no part', () => {
    const alpha = blockOf(first, '10.42.0.2');
    const result = trace(T0 - 300, alpha.firstPort, alpha.publicAddress, now);
    expect(result.notes.map((note) => note.code)).not.toContain('archive-misdated');
  });

  test('once now is past its name, it is an archive like any other', () => {
    const gamma = blockOf(second, '10.42.2.2');
    const later = T0 + AHEAD + 600;
    const result = trace(T0 + AHEAD + 300, gamma.firstPort, gamma.publicAddress, later);
    expect(result.status).toBe('found');
    expect(clients(result)).toEqual([parseIpv4('10.42.2.2')]);
    expect(result.notes.map((note) => note.code)).not.toContain('archive-misdated');
  });
});

test('every archive dated in the future (the clock ahead since the first apply): both answers, no crash', async () => {
  site.sandbox.writeProfiles([ALPHA]);
  const only = await apply();
  const alpha = blockOf(only, '10.42.0.2');
  // Traced an hour before the first archive's name (found by an audit: a RangeError).
  const result = trace(T0 - 1800, alpha.firstPort, alpha.publicAddress, T0 - 1800);
  expect(result.status).toBe('ambiguous');
  expect(clients(result)).toEqual([parseIpv4('10.42.0.2')]);
  const note = result.notes.find((each) => each.code === 'archive-misdated');
  expect(note?.message).toContain('at any moment before its name');
});
