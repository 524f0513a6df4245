/**
 * "A client keeps its block as long as it exists": the blocks to keep are those of the ruleset
 * that is active, the newest archive's, which the kernel holds. A rules file that says
 * otherwise (an older copy put back from a backup, or the one a kill between the archive's
 * commit and the file's rename left) must not move the clients the active ruleset placed.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { applyRuleset, type ApplyResult } from '../../src/apply/apply.js';
import { discover } from '../../src/cli/discovery.js';
import { loadConfig } from '../../src/config-file.js';
import { parseIpv4 } from '../../src/net/ipv4.js';
import { FakeNatTable } from '../helpers/fake-nat-table.js';
import { ALPHA, DELTA, GAMMA } from '../helpers/profiles.js';
import { createSandbox, type Sandbox } from '../helpers/sandbox.js';
import { SteppingClock } from '../helpers/stepping-clock.js';

let sandbox: Sandbox;
let table: FakeNatTable;
let clock: SteppingClock;

beforeEach(() => {
  sandbox = createSandbox('iptables');
  sandbox.writeConfig({ nat: { publicAddresses: ['192.0.2.1', '192.0.2.2'] } });
  table = new FakeNatTable();
  clock = new SteppingClock(Date.parse('2026-12-07T12:00:00Z'));
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

/** DELTA's clients (10.42.3.2 ... 10.42.3.14) and where they leave. */
function deltaBlocks(result: ApplyResult): string[] {
  return Array.from({ length: 13 }, (_, i) => {
    const found = result.plan.map.forward((parseIpv4('10.42.3.2') ?? 0) + i);
    return found ? `${found.publicAddress}:${found.firstPort}-${found.lastPort}` : 'none';
  });
}

test('an older rules file put back does not move the clients the active ruleset placed', async () => {
  sandbox.writeProfiles([ALPHA]);
  await apply();
  const older = readFileSync(sandbox.rulesFile, 'utf8');
  sandbox.writeProfiles([ALPHA, DELTA]);
  const placed = deltaBlocks(await apply());
  expect(placed).not.toContain('none');

  // A backup of the rules file from before DELTA is put back; then GAMMA, listed before DELTA,
  // is added: GAMMA's clients take free blocks, DELTA's keep theirs.
  writeFileSync(sandbox.rulesFile, older);
  sandbox.writeProfiles([ALPHA, GAMMA, DELTA]);
  const after = await apply();
  expect(after.outcome).toBe('applied');
  expect(deltaBlocks(after)).toEqual(placed);
  // And the kernel got them where they were: none of DELTA's rules changed.
  expect(after.changedClients).toBe(0);
});
