/**
 * ApplyResult.timings: where an apply's time went, phase by phase and step by step, in the
 * order decideApply chose (the daemon logs it, the benchmark prints it). Checked here against
 * a fake nat table: the names are the steps that ran, nothing else, and every figure is a
 * duration.
 */
import { applyRuleset, type ApplyResult } from '../../src/apply/apply.js';
import { discover } from '../../src/cli/discovery.js';
import { loadConfig } from '../../src/config-file.js';
import { FakeNatTable } from '../helpers/fake-nat-table.js';
import { ALPHA, BETA } from '../helpers/profiles.js';
import { createSandbox, type Sandbox } from '../helpers/sandbox.js';
import { SteppingClock } from '../helpers/stepping-clock.js';

let sandbox: Sandbox;
let table: FakeNatTable;
let clock: SteppingClock;

beforeEach(() => {
  sandbox = createSandbox('iptables');
  sandbox.writeProfiles([ALPHA]);
  sandbox.writeConfig({
    nat: { publicAddresses: ['192.0.2.1', '192.0.2.2'], portsPerClient: 256 },
  });
  table = new FakeNatTable();
  clock = new SteppingClock(Date.parse('2026-12-06T12:00:00Z'));
});

afterEach(() => {
  sandbox.remove();
});

async function apply(): Promise<ApplyResult> {
  const result = await applyRuleset(loadConfig(sandbox.configFile), {
    runner: table,
    clock,
    discover,
  });
  clock.ms += 2000;
  return result;
}

const READ_PLAN = ['read', 'plan', 'read-kernel'];

function expectDurations(result: ApplyResult): void {
  for (const [name, ms] of Object.entries(result.timings)) {
    expect([name, Number.isFinite(ms) && ms >= 0]).toEqual([name, true]);
  }
}

test('a first apply times reading, planning and each step it ran, in that order', async () => {
  const result = await apply();
  expect(result.outcome).toBe('applied');
  expect(Object.keys(result.timings)).toEqual([
    ...READ_PLAN,
    'prepare-archive',
    'write-rules-temporary',
    'anchor-pending',
    'wait-archive-second',
    'load-kernel',
    'commit-archive',
    'rename-rules',
    'forget-conntrack',
    // Last, off the way to the kernel: the compact state for the next apply's read.
    'plan-cache',
  ]);
  expect(result.planCache).toEqual({ read: false, written: true });
  expectDurations(result);
});

test('an apply with nothing to change times only reading, planning and the kernel read', async () => {
  await apply();
  const result = await apply();
  expect(result.outcome).toBe('unchanged');
  // The plan cache the first apply wrote was read, so it is not written again.
  expect(result.planCache).toEqual({ read: true, written: false });
  expect(Object.keys(result.timings)).toEqual(READ_PLAN);
  expectDurations(result);
});

test('a second profile added: its apply times the kernel load, after reading and planning', async () => {
  await apply();
  sandbox.writeProfiles([ALPHA, BETA]);
  const result = await apply();
  expect(result.outcome).toBe('applied');
  expect(Object.keys(result.timings)).toContain('load-kernel');
  expect(Object.keys(result.timings).slice(0, 3)).toEqual(READ_PLAN);
  expectDurations(result);
});
