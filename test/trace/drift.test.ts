/**
 * Drift: the nat table flushed (or our rules edited) while a ruleset was active, then found and
 * repaired by a later apply without a new archive. Between the last moment an apply knew the
 * kernel held the ruleset and the repair, eduVPN's MASQUERADE may have given any port, so trace
 * must not answer for that time as if the archive had been in force; before and after it must.
 * The applies run against a fake nat table; trace reads the real files.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { applyRuleset } from '../../src/apply/apply.js';
import { DRIFT_LOG } from '../../src/archive/drift.js';
import { discover } from '../../src/cli/discovery.js';
import { loadConfig } from '../../src/config-file.js';
import { parseIpv4 } from '../../src/net/ipv4.js';
import type { TraceResult } from '../../src/trace/trace.js';
import { lookupClientAt } from '../../src/trace/lookup-at.js';
import { archiveDirOf } from '../../src/cli/trace-sources.js';
import { FakeNatTable } from '../helpers/fake-nat-table.js';
import { createFakeSite, type FakeSite } from '../helpers/fake-site.js';
import { ALPHA } from '../helpers/profiles.js';

const T0 = Date.parse('2026-12-07T12:00:00Z') / 1000;

let site: FakeSite;

beforeEach(() => {
  site = createFakeSite(new FakeNatTable(), T0 * 1000);
  site.sandbox.writeProfiles([ALPHA]);
});

afterEach(() => {
  site.sandbox.remove();
});

function trace(at: number, port: number, address: number): TraceResult {
  return site.trace({ at, port, address, now: Math.floor(site.clock.ms / 1000) });
}

const codes = (result: TraceResult) => result.notes.map((note) => note.code);

test('the time between the last check that found the rules and the repair is not answered with certainty', async () => {
  const first = await site.apply();
  const alpha = first.plan.map.forward(parseIpv4('10.42.0.2') ?? 0);
  if (!alpha) throw new Error('10.42.0.2 has no block');
  // A check a minute later finds the rules in place (it reads the canary).
  site.clock.ms = (T0 + 60) * 1000;
  expect((await site.apply()).outcome).toBe('unchanged');
  // Then the nat table is flushed; the next check, at T0 + 180, finds and repairs it.
  site.table.load('*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n');
  site.clock.ms = (T0 + 180) * 1000;
  const repair = await site.apply();
  expect(repair.outcome).toBe('repaired');
  expect(repair.archive).toBeUndefined();
  const log = readFileSync(join(site.sandbox.archiveDir, DRIFT_LOG), 'utf8');
  expect(log).toMatch(
    new RegExp(`^${String(T0 + 60)} ${String(T0 + 180)} rules\\.v4\\.\\d+\\.gz\\n$`),
  );

  const during = trace(T0 + 120, alpha.firstPort, alpha.publicAddress);
  expect(during.status).toBe('ambiguous');
  expect(codes(during)).toContain('kernel-drifted');
  expect(during.notes.find((note) => note.code === 'kernel-drifted')?.message).toContain(
    "eduVPN's MASQUERADE",
  );
  // lookup --at as honest as trace (found by an audit: it answered found).
  const config = loadConfig(site.sandbox.configFile);
  const lookup = (at: number) =>
    lookupClientAt(
      [archiveDirOf(site.sandbox.archiveDir, config, site.clock.ms)],
      alpha.client,
      at,
    );
  expect(lookup(T0 + 120).status).toBe('ambiguous');
  expect(lookup(T0 + 120).notes.map((note) => note.code)).toContain('kernel-drifted');
  // Before the last check that found the rules, and after the repair: certain.
  for (const at of [T0 + 30, T0 + 240]) {
    site.clock.ms = (T0 + 300) * 1000;
    const result = trace(at, alpha.firstPort, alpha.publicAddress);
    expect([at, result.status]).toEqual([at, 'found']);
    expect(codes(result)).not.toContain('kernel-drifted');
    expect([at, lookup(at).status]).toEqual([at, 'found']);
  }
});

test('an apply that only trusted the kernel (the daemon on a change) does not move the start of a window', async () => {
  const first = await site.apply();
  const verifiedAt = () =>
    Object.values(
      (
        JSON.parse(readFileSync(site.sandbox.stateFile, 'utf8')) as {
          archiveDirs: Record<string, { verifiedAt?: number }>;
        }
      ).archiveDirs,
    )[0]?.verifiedAt;
  expect(verifiedAt()).toBe(T0);
  site.clock.ms = (T0 + 60) * 1000;
  const trusted = {
    plan: first.plan,
    archive: first.activeArchive,
    archiveSha256: first.planArchive,
    rulesFile: first.rulesFile,
  };
  const config = loadConfig(site.sandbox.configFile);
  const again = await applyRuleset(
    config,
    { runner: site.table, clock: site.clock, discover },
    { trusted },
  );
  expect(again.kernelRead).toBe('trusted');
  expect(verifiedAt()).toBe(T0);
  // A check that reads the kernel (its canary) does.
  site.clock.ms = (T0 + 120) * 1000;
  expect((await site.apply()).kernelRead).toBe('canary');
  expect(verifiedAt()).toBe(T0 + 120);
});

test('a last check recorded by a clock that ran ahead does not empty the window', async () => {
  const first = await site.apply();
  const alpha = first.plan.map.forward(parseIpv4('10.42.0.2') ?? 0);
  if (!alpha) throw new Error('10.42.0.2 has no block');
  // A check at T0 + 60 while the wall clock ran an hour ahead (found by an audit).
  site.clock.ms = (T0 + 60 + 3600) * 1000;
  expect((await site.apply()).outcome).toBe('unchanged');
  // The clock put right, the table flushed, the check at T0 + 180 repairs it.
  site.table.load('*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n');
  site.clock.ms = (T0 + 180) * 1000;
  expect((await site.apply()).outcome).toBe('repaired');
  // From the archive's activation, the last moment known for sure.
  const log = readFileSync(join(site.sandbox.archiveDir, DRIFT_LOG), 'utf8');
  expect(log).toMatch(new RegExp(`^${String(T0)} ${String(T0 + 180)} `));
  site.clock.ms = (T0 + 300) * 1000;
  const during = trace(T0 + 120, alpha.firstPort, alpha.publicAddress);
  expect(during.status).toBe('ambiguous');
  expect(codes(during)).toContain('kernel-drifted');
});
