/**
 * An applier killed between its kernel load and its archive's rename (kill -9, power loss)
 * leaves a durable `rules.v4.pending`, the state file's pending hash, maybe a rules file
 * temporary, and a lock naming a dead process. The next apply resolves it by asking the
 * kernel: a ruleset the kernel holds did become active and is archived (else trace would have
 * no record of it); one the kernel does not hold never did and is dropped (else trace would
 * name clients by a ruleset that never translated anything).
 *
 * The state is made by a real apply that is stopped for good at its kernel load, over the
 * user-space nat table, with the lock then handed to a dead process: the files are exactly
 * those such a kill leaves, whatever apply.ts writes before the load.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { applyRuleset, type ApplyResult } from '../../src/apply/apply.js';
import { readActiveStatus } from '../../src/apply/status.js';
import { readDirState } from '../../src/archive/anchor.js';
import { archiveBody, parseArchiveHeader, sha256 } from '../../src/archive/header.js';
import { prepareArchive } from '../../src/archive/store.js';
import { discover } from '../../src/cli/discovery.js';
import { loadConfig } from '../../src/config-file.js';
import type { CommandRunner, RunOptions, RunResult } from '../../src/netfilter/runner.js';
import { readArchiveText } from '../helpers/archive-files.js';
import { FakeDualNatTable } from '../helpers/fake-dual-nat-table.js';
import { FakeNatTable } from '../helpers/fake-nat-table.js';
import { FakeNftTable } from '../helpers/fake-nft-table.js';
import { ALPHA, BETA, GAMMA } from '../helpers/profiles.js';
import { createSandbox, type Sandbox } from '../helpers/sandbox.js';
import { SteppingClock } from '../helpers/stepping-clock.js';
import { decodeBindingIndex } from '../../src/archive/binding-index.js';

let sandbox: Sandbox;
let table: FakeNatTable;
let clock: SteppingClock;

/** A process that has ended (and was reaped): what the lock and the child file name after a kill. */
const deadPid = spawnSync('true').pid;

beforeEach(() => {
  sandbox = createSandbox('iptables');
  sandbox.writeProfiles([ALPHA, BETA]);
  sandbox.writeConfig();
  table = new FakeNatTable();
  clock = new SteppingClock(Date.parse('2026-12-05T12:00:00Z'));
});

afterEach(() => {
  sandbox.remove();
});

const config = () => loadConfig(sandbox.configFile);

async function apply(): Promise<ApplyResult> {
  const result = await applyRuleset(config(), { runner: table, clock, discover });
  clock.ms += 2000;
  return result;
}

/** Where an apply is killed. */
interface Kill {
  /** After the load's commit (the kernel holds what it loaded), or before it. */
  readonly afterCommit: boolean;
  /** The load it is killed in (with nat6, IPv4's comes first). */
  readonly at?: 'iptables-restore' | 'ip6tables-restore';
  readonly force?: boolean;
}

/**
 * The commands of an apply that is killed during a kernel load: everything before it runs on
 * the table; the load reaches the table when the kill came after its commit, and then the
 * apply never resumes (no rename, no clean-up of its finally).
 */
class KilledAtLoad implements CommandRunner {
  private reach: () => void = () => undefined;
  /** Resolves once the apply is stopped at its load. */
  readonly stopped = new Promise<void>((resolve) => {
    this.reach = resolve;
  });

  constructor(private readonly kill: Kill) {}

  async run(command: string, args: readonly string[], options?: RunOptions): Promise<RunResult> {
    if (command !== (this.kill.at ?? 'iptables-restore') || args.includes('--test'))
      return table.run(command, args, options);
    options?.onSpawn?.(deadPid);
    if (this.kill.afterCommit) await table.run(command, args, options);
    this.reach();
    return new Promise<never>(() => undefined);
  }
}

/** Starts an apply, kills it at a load, and leaves the lock as a killed holder leaves it. */
async function killedApply(kill: Kill): Promise<string> {
  const started = new Date(clock.ms).toISOString();
  const runner = new KilledAtLoad(kill);
  void applyRuleset(config(), { runner, clock, discover }, { force: kill.force ?? false });
  await runner.stopped;
  writeFileSync(
    join(sandbox.dir, 'lock'),
    JSON.stringify({ pid: deadPid, command: 'apply', since: started }),
  );
  clock.ms += 3000;
  return started;
}

function archives(): string[] {
  return readdirSync(sandbox.archiveDir)
    .filter((name) => /^rules\.v4\.\d+/.test(name))
    .sort();
}

const pendingFile = () => join(sandbox.archiveDir, 'rules.v4.pending');
const childFile = () => join(sandbox.archiveDir, '.rules.v4.pending.child');
const anchored = () => readDirState(sandbox.stateFile, sandbox.archiveDir);
const kernelLoads = () =>
  table.calls.filter((call) => call.startsWith('iptables-restore') && !call.includes('--test'));
/** Files an applier writes under temporary names (beside the rules file and the state file). */
const temporaries = () => readdirSync(sandbox.dir).filter((name) => name.startsWith('.'));
const canary = () =>
  /^-A TNAT_APPLIED -m comment --comment sha256:([0-9a-f]{64})$/m.exec(table.save())?.[1];

test('what a kill after the kernel load leaves: the pending archive anchored, its child recorded, the rules file not renamed', async () => {
  await apply();
  sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
  const fileBefore = readFileSync(sandbox.rulesFile, 'utf8');
  await killedApply({ afterCommit: true });

  const pendingSha = sha256(readFileSync(pendingFile()));
  expect(anchored().pending?.sha256).toBe(pendingSha);
  expect(readFileSync(childFile(), 'utf8').trim()).toBe(String(deadPid));
  expect(table.save()).toContain('-s 10.42.2.2/32');
  expect(canary()).toBe(pendingSha);
  expect(readFileSync(sandbox.rulesFile, 'utf8')).toBe(fileBefore);
  expect(temporaries()).toEqual([expect.stringMatching(/^\.rules\.v4\./)]);
  expect(archives()).toHaveLength(1);
});

test('the kernel holds the pending ruleset: the next apply archives it as active, from its own bytes, and reports it', async () => {
  await apply();
  sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
  const interruptedStart = await killedApply({ afterCommit: true });
  const pendingSha = sha256(readFileSync(pendingFile()));
  table.calls.length = 0;
  const resolvedAt = Math.floor(clock.ms / 1000);

  const result = await apply();
  const recovered = `rules.v4.${resolvedAt}.gz`;
  expect(archives()).toEqual([expect.any(String), recovered]);
  expect(sha256(readFileSync(join(sandbox.archiveDir, recovered)))).toBe(pendingSha);
  // With its binding index, as every archive: a trace reads the index, not the text.
  const index = decodeBindingIndex(
    readFileSync(join(sandbox.archiveDir, `.${recovered}.idx`)),
    recovered,
    pendingSha,
  );
  expect(index?.assignments()).toHaveLength(756);
  expect(result.warnings).toEqual([
    `an interrupted apply (started ${interruptedStart}) had loaded its ruleset; it is now archived as ${join(sandbox.archiveDir, recovered)}, and trace treats the time between as uncertain`,
  ]);
  // Its header still says when the interrupted apply began: trace's uncertain interval.
  const text = readArchiveText(join(sandbox.archiveDir, recovered));
  expect(parseArchiveHeader(text)?.applyStarted).toBe(interruptedStart);
  expect(anchored().head).toMatchObject({
    name: recovered,
    sha256: pendingSha,
    activatedAt: resolvedAt,
    clients: 756,
  });
  // Nothing of the killed apply is left, the kernel was not loaded again, and the rules file
  // the killed apply never renamed is written now.
  expect(existsSync(pendingFile())).toBe(false);
  expect(existsSync(childFile())).toBe(false);
  expect(temporaries()).toEqual([]);
  expect(kernelLoads()).toEqual([]);
  expect(result).toMatchObject({ outcome: 'file-updated', archive: undefined });
  expect(readFileSync(sandbox.rulesFile, 'utf8')).toBe(archiveBody(text));

  // The three agree again, and the canary the killed apply set now names an archive.
  expect((await readActiveStatus(config(), table)).agree).toBe(true);
  expect(await apply()).toMatchObject({ outcome: 'unchanged', kernelRead: 'canary' });
});

test('the kernel never took the pending ruleset: the next apply drops it and applies anew', async () => {
  await apply();
  const tableBefore = table.save();
  sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
  await killedApply({ afterCommit: false });
  const pendingSha = sha256(readFileSync(pendingFile()));
  expect(table.save()).toBe(tableBefore);
  const started = new Date(clock.ms).toISOString();

  const result = await apply();
  expect(result).toMatchObject({ outcome: 'applied', warnings: [] });
  expect(existsSync(pendingFile())).toBe(false);
  expect(existsSync(childFile())).toBe(false);
  const names = archives();
  expect(names).toHaveLength(2);
  const newest = join(sandbox.archiveDir, names[1] ?? '');
  expect(sha256(readFileSync(newest))).not.toBe(pendingSha);
  expect(parseArchiveHeader(readArchiveText(newest))?.applyStarted).toBe(started);
  expect(table.save()).toContain('-s 10.42.2.2/32');
  expect(anchored().pending).toBeUndefined();
  expect(anchored().head?.sha256).toBe(result.archive?.sha256);
});

test('a killed forced apply of the ruleset already active: dropped, not archived a second time', async () => {
  await apply();
  const before = archives();
  await killedApply({ afterCommit: true, force: true });
  expect(existsSync(pendingFile())).toBe(true);

  const result = await apply();
  expect(result).toMatchObject({ outcome: 'unchanged', warnings: [] });
  expect(archives()).toEqual(before);
  expect(existsSync(pendingFile())).toBe(false);
  // The canary named the dropped archive; it names the active one again.
  expect(canary()).toBe(anchored().head?.sha256);
});

test('leftovers of no activation here (the other backend, an IPv6 half alone) are dropped unread', async () => {
  await apply();
  const before = archives();
  const header = {
    tool: 'test',
    applyStarted: new Date(clock.ms).toISOString(),
    reason: 'changed',
    clients: 0,
    settings: {},
  };
  prepareArchive(
    sandbox.archiveDir,
    { ...header, backend: 'nftables' },
    'table ip x {\n}\n',
    undefined,
  );
  prepareArchive(
    sandbox.archiveDir,
    { ...header, backend: 'iptables', family: 'ipv6' },
    '*nat\nCOMMIT\n',
    undefined,
    true,
    'ip6tables',
  );
  expect(readdirSync(sandbox.archiveDir).filter((name) => name.endsWith('.pending'))).toEqual([
    'rules.v6.pending',
    'traceable-nat.nft.pending',
  ]);

  expect(await apply()).toMatchObject({ outcome: 'unchanged', warnings: [] });
  expect(readdirSync(sandbox.archiveDir).filter((name) => name.endsWith('.pending'))).toEqual([]);
  expect(archives()).toEqual(before);
  // The nft pending archive was never checked against a kernel: only iptables was asked.
  expect(table.calls.some((call) => call.startsWith('nft'))).toBe(false);
});

describe('an apply that changed the outgoing interface only: every binding stays, the rules do not', () => {
  beforeEach(async () => {
    await apply();
    sandbox.writeConfig({ nat: { outInterface: 'eth1' } });
  });

  const jumps = () => table.save().match(/^-A POSTROUTING .*-j TNAT$/gm);

  test('killed after its load: the ruleset the kernel took is archived (it was dropped as no change)', async () => {
    await killedApply({ afterCommit: true });
    const pendingSha = sha256(readFileSync(pendingFile()));
    expect(jumps()).toEqual(['-A POSTROUTING -o eth1 -j TNAT']);
    table.calls.length = 0;

    const result = await apply();
    expect(result.warnings).toEqual([expect.stringMatching(/^an interrupted apply /)]);
    expect(archives()).toHaveLength(2);
    expect(anchored().head?.sha256).toBe(pendingSha);
    expect(result).toMatchObject({ outcome: 'file-updated', archive: undefined });
    expect(kernelLoads()).toEqual([]);
  });

  test('killed after its load, the canary deleted since: the rules compared whole decide, archived', async () => {
    await killedApply({ afterCommit: true });
    const pendingSha = sha256(readFileSync(pendingFile()));
    const withoutCanary = new FakeNatTable();
    withoutCanary.load(table.save().replace(/^(:TNAT_APPLIED .*|-A TNAT_APPLIED .*)\n/gm, ''));
    table = withoutCanary;
    expect(canary()).toBeUndefined();

    const result = await apply();
    expect(result.warnings).toEqual([expect.stringMatching(/^an interrupted apply /)]);
    expect(archives()).toHaveLength(2);
    expect(anchored().head?.sha256).toBe(pendingSha);
  });

  test('killed before its load took: dropped, and the change applied anew', async () => {
    await killedApply({ afterCommit: false });
    const pendingSha = sha256(readFileSync(pendingFile()));
    expect(jumps()).toEqual(['-A POSTROUTING -o eth0 -j TNAT']);

    const result = await apply();
    expect(result).toMatchObject({ outcome: 'applied', warnings: [] });
    expect(archives()).toHaveLength(2);
    expect(result.archive?.sha256).not.toBe(pendingSha);
    expect(jumps()).toEqual(['-A POSTROUTING -o eth1 -j TNAT']);
  });

  test('killed before its load, the canary deleted since: the rules compared whole decide, dropped', async () => {
    await killedApply({ afterCommit: false });
    const withoutCanary = new FakeNatTable();
    withoutCanary.load(table.save().replace(/^(:TNAT_APPLIED .*|-A TNAT_APPLIED .*)\n/gm, ''));
    table = withoutCanary;

    const result = await apply();
    expect(result).toMatchObject({ outcome: 'applied', warnings: [] });
    expect(archives()).toHaveLength(2);
    expect(jumps()).toEqual(['-A POSTROUTING -o eth1 -j TNAT']);
  });
});

describe('nftables: an apply that changed the outgoing interface only, killed in its nft load', () => {
  let nft: FakeNftTable;

  beforeEach(async () => {
    sandbox.remove();
    sandbox = createSandbox('nftables');
    sandbox.writeProfiles([ALPHA, BETA]);
    sandbox.writeConfig();
    nft = new FakeNftTable();
    await applyRuleset(config(), { runner: nft, clock, discover });
    clock.ms += 2000;
    sandbox.writeConfig({ nat: { outInterface: 'eth1' } });
  });

  const nftArchives = () =>
    readdirSync(sandbox.archiveDir).filter((name) => /^traceable-nat\.nft\.\d+/.test(name));

  /** Like KilledAtLoad, for `nft -f` (the lists before it run on the table). */
  async function killedNftApply(afterCommit: boolean): Promise<void> {
    let stopped: () => void = () => undefined;
    const reached = new Promise<void>((resolve) => {
      stopped = resolve;
    });
    const runner: CommandRunner = {
      async run(command, args, options) {
        if (command !== 'nft' || !args.includes('-f')) return nft.run(command, args, options);
        options?.onSpawn?.(deadPid);
        if (afterCommit) await nft.run(command, args, options);
        stopped();
        return new Promise<never>(() => undefined);
      },
    };
    void applyRuleset(config(), { runner, clock, discover });
    await reached;
    writeFileSync(
      join(sandbox.dir, 'lock'),
      JSON.stringify({ pid: deadPid, command: 'apply', since: new Date(clock.ms).toISOString() }),
    );
    clock.ms += 3000;
  }

  test('killed after its load: archived (it was dropped as no change)', async () => {
    await killedNftApply(true);
    expect(nft.list()).toContain('oifname "eth1"');
    const pendingSha = sha256(readFileSync(join(sandbox.archiveDir, 'traceable-nat.nft.pending')));

    const result = await applyRuleset(config(), { runner: nft, clock, discover });
    expect(result.warnings).toEqual([expect.stringMatching(/^an interrupted apply /)]);
    expect(nftArchives()).toHaveLength(2);
    expect(anchored().head?.sha256).toBe(pendingSha);
    expect((await readActiveStatus(config(), nft)).agree).toBe(true);
  });

  test('killed before its load took: dropped, and the change applied anew', async () => {
    await killedNftApply(false);
    expect(nft.list()).toContain('oifname "eth0"');

    const result = await applyRuleset(config(), { runner: nft, clock, discover });
    expect(result).toMatchObject({ outcome: 'applied', warnings: [] });
    expect(nftArchives()).toHaveLength(2);
    expect(nft.list()).toContain('oifname "eth1"');
    expect((await readActiveStatus(config(), nft)).agree).toBe(true);
  });
});

describe('with nat6: an apply that changed only IPv6, killed in its ip6tables load', () => {
  let dual: FakeDualNatTable;

  beforeEach(() => {
    sandbox.writeConfig({ nat6: { publicAddresses: ['2001:db8::1'] } });
    dual = new FakeDualNatTable();
    table = dual;
  });

  /** The IPv6 half beside each rules.v4 archive. */
  const halves = () =>
    readdirSync(sandbox.archiveDir)
      .filter((name) => /^rules\.v6\.\d+/.test(name))
      .sort();

  test('the kernel holds the new IPv6 rules: both halves are archived, under one second, the IPv6 one vouched for', async () => {
    await apply();
    sandbox.writeConfig({ nat6: { publicAddresses: ['2001:db8::2'] } });
    await killedApply({ afterCommit: true, at: 'ip6tables-restore' });
    expect(dual.ipv6.save()).toContain('[2001:db8::2]');
    const resolvedAt = Math.floor(clock.ms / 1000);

    const result = await apply();
    expect(result.warnings).toEqual([expect.stringMatching(/^an interrupted apply /)]);
    expect(archives()).toEqual([expect.any(String), `rules.v4.${resolvedAt}.gz`]);
    expect(halves()).toEqual([expect.any(String), `rules.v6.${resolvedAt}.gz`]);
    const header = parseArchiveHeader(
      readArchiveText(join(sandbox.archiveDir, `rules.v4.${resolvedAt}.gz`)),
    );
    expect(header?.ipv6?.sha256).toBe(
      sha256(readFileSync(join(sandbox.archiveDir, `rules.v6.${resolvedAt}.gz`))),
    );
    expect(readdirSync(sandbox.archiveDir).filter((name) => name.endsWith('.pending'))).toEqual([]);
    const status = await readActiveStatus(config(), table);
    expect(status.ipv6?.archive.targets).toEqual(['2001:db8::2']);
    expect(status.agree).toBe(true);
  });

  test('killed before the IPv6 commit: both pending halves are dropped, and the change applied anew', async () => {
    await apply();
    const ipv6Before = dual.ipv6.save();
    sandbox.writeConfig({ nat6: { publicAddresses: ['2001:db8::2'] } });
    await killedApply({ afterCommit: false, at: 'ip6tables-restore' });
    expect(dual.ipv6.save()).toBe(ipv6Before);
    expect(readdirSync(sandbox.archiveDir).filter((name) => name.endsWith('.pending'))).toEqual([
      'rules.v4.pending',
      'rules.v6.pending',
    ]);

    const result = await apply();
    expect(result).toMatchObject({ outcome: 'applied', warnings: [] });
    expect(readdirSync(sandbox.archiveDir).filter((name) => name.endsWith('.pending'))).toEqual([]);
    expect(halves()).toHaveLength(2);
    expect(dual.ipv6.save()).toContain('[2001:db8::2]');
  });
});

test('an index temporary left by an apply killed while it wrote the index is removed by the next apply; other files stay', async () => {
  await apply();
  const [archive] = archives();
  const leftover = join(sandbox.archiveDir, `..${archive ?? ''}.idx.0123456789ab.tmp`);
  const foreign = join(sandbox.archiveDir, 'notes.0123456789ab.tmp');
  writeFileSync(leftover, 'cut');
  writeFileSync(foreign, "the administrator's");
  expect(await apply()).toMatchObject({ outcome: 'unchanged' });
  expect(existsSync(leftover)).toBe(false);
  expect(existsSync(foreign)).toBe(true);
});
