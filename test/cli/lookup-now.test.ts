/**
 * `lookup <client>` without --at answers what is active, the newest archive, and names the
 * plan of today's configuration beside it when the two differ. It used to answer the plan
 * alone: after an edit not applied yet (the daemon stopped, a change still settling, an apply
 * refused), it named a block the kernel did not translate the client to.
 *
 * The archives are made by real applies over the user-space nat table, dated a minute ago
 * (lookup reads "now" from the system clock); the CLI runs in-process.
 */
import { applyRuleset, planFromDisk } from '../../src/apply/apply.js';
import { prepareArchive } from '../../src/archive/store.js';
import { discover } from '../../src/cli/discovery.js';
import type { CliIo } from '../../src/cli/io.js';
import { main } from '../../src/cli/main.js';
import { loadConfig } from '../../src/config-file.js';
import { FakeDualNatTable } from '../helpers/fake-dual-nat-table.js';
import { FakeNatTable } from '../helpers/fake-nat-table.js';
import { ALPHA, BETA, GAMMA } from '../helpers/profiles.js';
import { createSandbox, type Sandbox } from '../helpers/sandbox.js';
import { SteppingClock } from '../helpers/stepping-clock.js';

let sandbox: Sandbox;
let table: FakeNatTable;
let clock: SteppingClock;

beforeEach(() => {
  sandbox = createSandbox('iptables');
  sandbox.writeProfiles([ALPHA, BETA]);
  sandbox.writeConfig({ firewall: { removalGuard: false } });
  table = new FakeNatTable();
  clock = new SteppingClock(Date.now() - 60_000);
});

afterEach(() => {
  sandbox.remove();
});

async function apply(): Promise<void> {
  await applyRuleset(loadConfig(sandbox.configFile), { runner: table, clock, discover });
  clock.ms += 2000;
}

async function lookup(...args: string[]): Promise<{ status: number; stdout: string }> {
  let stdout = '';
  const io: CliIo = { stdout: (text) => (stdout += text), stderr: () => undefined, env: {} };
  const status = await main(['lookup', ...args, '--config', sandbox.configFile], io);
  return { status, stdout };
}

interface LookupJson {
  found: boolean;
  publicAddress?: string;
  firstPort?: number;
  source: string;
  archive: string | null;
  applied: boolean;
  planned: { publicAddress: string; firstPort: number } | null;
}

async function lookupJson(client: string): Promise<LookupJson> {
  return JSON.parse((await lookup(client, '--json')).stdout) as LookupJson;
}

test('nothing applied yet: the plan, said to be one', async () => {
  const result = await lookup('10.42.0.2');
  expect(result.status).toBe(0);
  expect(result.stdout).toBe(
    `10.42.0.2 (profile alpha, 10.42.0.0/24) -> 192.0.2.1 ports 65472-65535\n  planned: nothing is applied yet (no archive in ${sandbox.archiveDir})\n`,
  );
  expect(await lookupJson('10.42.0.2')).toMatchObject({
    found: true,
    source: 'plan',
    archive: null,
    applied: false,
  });
});

test('applied: the active block, one line, as the plan has it', async () => {
  await apply();
  const result = await lookup('10.42.0.2');
  expect(result).toEqual({
    status: 0,
    stdout: '10.42.0.2 (profile alpha, 10.42.0.0/24) -> 192.0.2.1 ports 65472-65535\n',
  });
  const json = await lookupJson('10.42.0.2');
  expect(json.archive).toMatch(/^rules\.v4\.\d+\.gz$/);
  expect(json).toMatchObject({
    found: true,
    publicAddress: '192.0.2.1',
    firstPort: 65472,
    source: 'active',
    applied: true,
    planned: { publicAddress: '192.0.2.1', firstPort: 65472 },
  });
});

test('an edit not applied yet: the active block, and the plan beside it (it answered the plan)', async () => {
  await apply();
  sandbox.writeConfig({
    nat: { publicAddresses: ['192.0.2.9'] },
    firewall: { removalGuard: false },
  });

  const result = await lookup('10.42.0.2');
  expect(result.status).toBe(0);
  expect(result.stdout).toMatch(
    /^10\.42\.0\.2 \(profile alpha, 10\.42\.0\.0\/24\) -> 192\.0\.2\.1 ports 65472-65535 \(active, rules\.v4\.\d+\.gz\)\n {2}the current configuration plans 192\.0\.2\.9 ports 65472-65535 for it, not applied yet/,
  );
  expect(await lookupJson('10.42.0.2')).toMatchObject({
    publicAddress: '192.0.2.1',
    applied: false,
    planned: { publicAddress: '192.0.2.9', firstPort: 65472 },
  });

  await apply();
  expect((await lookup('10.42.0.2')).stdout).toBe(
    '10.42.0.2 (profile alpha, 10.42.0.0/24) -> 192.0.2.9 ports 65472-65535\n',
  );
});

test('a profile removed but not applied: its clients still have their active blocks', async () => {
  await apply();
  sandbox.writeProfiles([ALPHA]);
  const result = await lookup('10.42.1.2');
  expect(result.status).toBe(0);
  expect(result.stdout).toMatch(
    /^10\.42\.1\.2 \(in no profile today\) -> 192\.0\.2\.1 ports \d+-\d+ \(active, rules\.v4\.\d+\.gz\)\n {2}the current configuration has no block for it any more, not applied yet\n$/,
  );
});

test('a profile added but not applied: no block yet (exit 1), the plan named', async () => {
  await apply();
  sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
  const result = await lookup('10.42.2.2');
  expect(result.status).toBe(1);
  expect(result.stdout).toMatch(
    /^10\.42\.2\.2 \(profile gamma, 10\.42\.2\.0\/24\): no block in the active ruleset \(rules\.v4\.\d+\.gz\)\n {2}the current configuration plans 192\.0\.2\.1 ports \d+-\d+ for it, not applied yet/,
  );
  expect(await lookupJson('10.42.2.2')).toMatchObject({ found: false, applied: false });
});

test('an address that is no client, active or planned: as before', async () => {
  await apply();
  expect(await lookup('10.99.0.2')).toEqual({
    status: 1,
    stdout: '10.99.0.2 is not a client address of any profile\n',
  });
});

test('in the very second of a switch: the newest, which was committed after its load (it said ambiguous)', async () => {
  await apply();
  sandbox.writeConfig({
    nat: { publicAddresses: ['192.0.2.9'] },
    firewall: { removalGuard: false },
  });
  clock.ms = Date.now();
  await apply();
  expect(await lookup('10.42.0.2')).toEqual({
    status: 0,
    stdout: '10.42.0.2 (profile alpha, 10.42.0.0/24) -> 192.0.2.9 ports 65472-65535\n',
  });
});

test('right after a repair of the kernel, in its very second: the active block (it said ambiguous)', async () => {
  await apply();
  // The nat table flushed by hand, found and repaired now: the drift window ends this second.
  table.load('*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n');
  clock.ms = Date.now();
  const repair = await applyRuleset(loadConfig(sandbox.configFile), {
    runner: table,
    clock,
    discover,
  });
  expect(repair.outcome).toBe('repaired');
  expect(await lookup('10.42.0.2')).toEqual({
    status: 0,
    stdout: '10.42.0.2 (profile alpha, 10.42.0.0/24) -> 192.0.2.1 ports 65472-65535\n',
  });
});

test('an interrupted apply left pending: both answers, ambiguous (exit 3)', async () => {
  await apply();
  sandbox.writeConfig({
    nat: { publicAddresses: ['192.0.2.9'] },
    firewall: { removalGuard: false },
  });
  const config = loadConfig(sandbox.configFile);
  const header = {
    tool: 'test',
    backend: 'iptables' as const,
    applyStarted: new Date(clock.ms).toISOString(),
    reason: 'changed',
    clients: 503,
    settings: {},
  };
  prepareArchive(
    sandbox.archiveDir,
    header,
    planFromDisk(config, discover(config)).fileText,
    undefined,
  );
  const result = await lookup('10.42.0.2');
  expect(result.status).toBe(3);
  expect(result.stdout).toContain('192.0.2.1 ports 65472-65535');
  expect(result.stdout).toContain('192.0.2.9 ports 65472-65535');
  expect(result.stdout).toContain('Answer     AMBIGUOUS');
});

test('IPv6 with nat6: the active block, then an edit not applied yet named beside it', async () => {
  const nat6 = (address: string) => ({
    nat6: { publicAddresses: [address] },
    firewall: { removalGuard: false },
  });
  sandbox.writeConfig(nat6('2001:db8::1'));
  table = new FakeDualNatTable();
  await apply();
  const client = 'fd0a:2a::2';
  const applied = await lookup(client);
  expect(applied.status).toBe(0);
  expect(applied.stdout).toMatch(
    /^fd0a:2a::2 \(twin of 10\.42\.0\.2\) .* -> \[2001:db8::1\] ports \d+-\d+\n$/,
  );

  sandbox.writeConfig(nat6('2001:db8::2'));
  const edited = await lookup(client);
  expect(edited.stdout).toMatch(
    /-> \[2001:db8::1\] ports (\d+-\d+) \(active, rules\.v\d\.\d+\.gz\)\n {2}the current configuration plans \[2001:db8::2\] ports \1 for it, not applied yet/,
  );
});
