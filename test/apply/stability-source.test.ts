/**
 * "A client keeps its block as long as it exists": the blocks to keep are those of the ruleset
 * that is active, the newest archive's, which the kernel holds. A rules file that says
 * otherwise (an older copy put back from a backup, or the one a kill between the archive's
 * commit and the file's rename left) must not move the clients the active ruleset placed.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import type { ApplyResult } from '../../src/apply/apply.js';
import { parseIpv4 } from '../../src/net/ipv4.js';
import { FakeNatTable } from '../helpers/fake-nat-table.js';
import { ALPHA, DELTA, GAMMA } from '../helpers/profiles.js';
import { createFakeSite, type FakeSite } from '../helpers/fake-site.js';

let site: FakeSite;

beforeEach(() => {
  site = createFakeSite(new FakeNatTable());
});

afterEach(() => {
  site.sandbox.remove();
});

/** DELTA's clients (10.42.3.2 ... 10.42.3.14) and where they leave. */
function deltaBlocks(result: ApplyResult): string[] {
  return Array.from({ length: 13 }, (_, i) => {
    const found = result.plan.map.forward((parseIpv4('10.42.3.2') ?? 0) + i);
    return found ? `${found.publicAddress}:${found.firstPort}-${found.lastPort}` : 'none';
  });
}

test('an older rules file put back does not move the clients the active ruleset placed', async () => {
  site.sandbox.writeProfiles([ALPHA]);
  await site.apply();
  const older = readFileSync(site.sandbox.rulesFile, 'utf8');
  site.sandbox.writeProfiles([ALPHA, DELTA]);
  const placed = deltaBlocks(await site.apply());
  expect(placed).not.toContain('none');

  // A backup of the rules file from before DELTA is put back; then GAMMA, listed before DELTA,
  // is added: GAMMA's clients take free blocks, DELTA's keep theirs.
  writeFileSync(site.sandbox.rulesFile, older);
  site.sandbox.writeProfiles([ALPHA, GAMMA, DELTA]);
  const after = await site.apply();
  expect(after.outcome).toBe('applied');
  expect(deltaBlocks(after)).toEqual(placed);
  // And the kernel got them where they were: none of DELTA's rules changed.
  expect(after.changedClients).toBe(0);
});
