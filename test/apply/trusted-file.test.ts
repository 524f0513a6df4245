/**
 * The daemon's next apply does not read the rules file again while it is still the file the
 * last apply left (TrustedPlan.rulesFile: inode, size, modification and status change times).
 * These tests try to slip a changed file past that trust: an edit in place of the same size
 * with its modification time put back, a new file of the same size, the afterWrite command
 * writing it after the rename. Each must be seen: the apply plans from the file as it is, as
 * an apply without trust (the dry run) does, and leaves the file holding that plan.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import {
  applyRuleset,
  planFromDisk,
  type ApplyResult,
  type TrustedPlan,
} from '../../src/apply/apply.js';
import { discover } from '../../src/cli/discovery.js';
import { loadConfig } from '../../src/config-file.js';
import type { RunOptions, RunResult } from '../../src/netfilter/runner.js';
import { FakeNatTable } from '../helpers/fake-nat-table.js';
import { ALPHA } from '../helpers/profiles.js';
import { createSandbox, type Sandbox } from '../helpers/sandbox.js';
import { SteppingClock } from '../helpers/stepping-clock.js';
import { writeKeepingMtime } from '../helpers/edit-in-place.js';

/** The fake table, and a real `sh -c` for firewall.afterWrite. */
class TableWithShell extends FakeNatTable {
  override run(command: string, args: readonly string[], options?: RunOptions) {
    if (command !== 'sh') return super.run(command, args, options);
    const child = spawnSync(command, args, { encoding: 'utf8' });
    const result: RunResult = {
      stdout: child.stdout,
      stderr: child.stderr,
      exitCode: child.status ?? 1,
    };
    return Promise.resolve(result);
  }
}

let sandbox: Sandbox;
let table: TableWithShell;
let clock: SteppingClock;

beforeEach(() => {
  sandbox = createSandbox('iptables');
  sandbox.writeProfiles([ALPHA]);
  sandbox.writeConfig({ nat: { publicAddresses: ['192.0.2.1', '192.0.2.2'] } });
  table = new TableWithShell();
  clock = new SteppingClock(Date.parse('2026-12-06T12:00:00Z'));
});

afterEach(() => {
  sandbox.remove();
});

async function apply(trusted?: TrustedPlan): Promise<ApplyResult> {
  const result = await applyRuleset(
    loadConfig(sandbox.configFile),
    { runner: table, clock, discover },
    { trusted },
  );
  clock.ms += 2000;
  return result;
}

/** What the daemon keeps from an apply. */
function trustOf(result: ApplyResult): TrustedPlan {
  return {
    plan: result.plan,
    archive: result.activeArchive,
    archiveSha256: result.planArchive,
    rulesFile: result.rulesFile,
  };
}

/** What an apply that trusts nothing plans from the files as they are now. */
function untrustedPlan(): string {
  const config = loadConfig(sandbox.configFile);
  return planFromDisk(config, discover(config)).fileText;
}

/** The trusted apply plans what the untrusted dry run plans, and leaves it in the file. */
async function expectSeen(first: ApplyResult, tampered: string): Promise<ApplyResult> {
  const expected = untrustedPlan();
  const result = await apply(trustOf(first));
  expect(result.plan.fileText === expected).toBe(true);
  expect(readFileSync(sandbox.rulesFile, 'utf8') === expected).toBe(true);
  // The tampered file is not the old plan's text, so trusting that plan would have been wrong:
  // the file left as it was (an edit of our rules: the clients keep the newest archive's
  // blocks, so the plan is the old one), or the plan without a line that is now in the file.
  expect(tampered === first.plan.fileText).toBe(false);
  return result;
}

/** One digit of the first port of our first SNAT rule, changed: the same size. */
function editInPlace(text: string): string {
  const at = text.indexOf('--to-source 192.0.2.');
  const digit = at + '--to-source 192.0.2.'.length;
  const changed = text[digit] === '1' ? '2' : '1';
  return text.slice(0, digit) + changed + text.slice(digit + 1);
}

test('an untouched rules file is trusted by its identity: nothing changes, and the identity is kept', async () => {
  const first = await apply();
  expect(first.rulesFile?.size).toBe(BigInt(statSync(sandbox.rulesFile).size));
  const again = await apply(trustOf(first));
  expect(again.outcome).toBe('unchanged');
  expect(again.rulesFile).toEqual(first.rulesFile);
});

test('an edit in place of the same size, its modification time put back, is seen and written over', async () => {
  const first = await apply();
  const text = readFileSync(sandbox.rulesFile, 'utf8');
  const edited = editInPlace(text);
  expect(edited.length).toBe(text.length);
  expect(edited).not.toBe(text);
  // The modification time put back to the nanosecond: only the status change time moved.
  writeKeepingMtime(sandbox.rulesFile, edited, first.rulesFile?.mtimeNs ?? 0n);
  const after = statSync(sandbox.rulesFile, { bigint: true });
  expect([after.ino, after.size, after.mtimeNs]).toEqual([
    first.rulesFile?.ino,
    first.rulesFile?.size,
    first.rulesFile?.mtimeNs,
  ]);
  const result = await expectSeen(first, edited);
  expect(result.outcome).not.toBe('unchanged');
});

test('a new file of the same size renamed over it is seen and written over', async () => {
  const first = await apply();
  const text = readFileSync(sandbox.rulesFile, 'utf8');
  const edited = editInPlace(text);
  writeFileSync(`${sandbox.rulesFile}.new`, edited);
  renameSync(`${sandbox.rulesFile}.new`, sandbox.rulesFile);
  const result = await expectSeen(first, edited);
  expect(result.outcome).not.toBe('unchanged');
});

test('a file the afterWrite command writes after the rename is not taken for ours', async () => {
  sandbox.writeConfig({
    nat: { publicAddresses: ['192.0.2.1', '192.0.2.2'] },
    firewall: { afterWrite: `echo '# saved by hand' >> ${sandbox.rulesFile}` },
  });
  const first = await apply();
  expect(first.rulesFileWritten).toBe(true);
  expect(readFileSync(sandbox.rulesFile, 'utf8')).toContain('# saved by hand');
  // Not ours, so the merge keeps the line: the plan now holds it.
  await expectSeen(first, readFileSync(sandbox.rulesFile, 'utf8'));
  expect(readFileSync(sandbox.rulesFile, 'utf8')).toContain('# saved by hand');
});
