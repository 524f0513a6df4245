/**
 * The daemon's promises without root, in-process: the Daemon over the user-space nat table
 * (test/helpers/fake-nat-table.ts) and real files in a sandbox, with time, the file watch and
 * systemd under the test's hand. Time moves only when the test advances it, and every run a
 * timer starts has finished before the next timer fires (an apply over the fake table and
 * synchronous files needs no more than one turn of the event loop). The real program under
 * real signals, iptables and inotify is tested in test/kernel/daemon*.test.ts.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { planFromDisk } from '../../src/apply/apply.js';
import { loadConfig } from '../../src/config-file.js';
import { discover } from '../../src/cli/discovery.js';
import { Daemon } from '../../src/daemon/daemon.js';
import { createLogger } from '../../src/daemon/logger.js';
import type { Notifier } from '../../src/daemon/notify.js';
import type { SourceWatcher } from '../../src/daemon/watch.js';
import { CommandError, isTnatError } from '../../src/errors.js';
import { isEnvironmentFailure } from '../../src/daemon/start-failure.js';
import type { CommandRunner, RunOptions } from '../../src/netfilter/runner.js';
import { extractNatPart } from '../../src/render/rules-file.js';
import type { Clock } from '../../src/system/clock.js';
import { includeLineFor, nftBootProblem, type BootProblem } from '../../src/system/nft-boot.js';
import { iptablesBootProblem } from '../../src/system/iptables-boot.js';
import { targetKnownIn, xtablesDirs } from '../../src/system/xtables.js';
import type { Config } from '../../src/config.js';
import { FakeNatTable } from '../helpers/fake-nat-table.js';
import { ALPHA, BETA, GAMMA } from '../helpers/profiles.js';
import { createSandbox, renderPortalConfig, type Sandbox } from '../helpers/sandbox.js';

const SETTLE_MS = 1000;
const VERIFY_MS = 30_000;

/** Lets every promise settle that the callbacks run so far started. */
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

interface Timer {
  at: number;
  readonly every: number | undefined;
  readonly callback: () => void;
}

/**
 * One clock for the applies (archive names) and the daemon's timers. An apply's sleep moves
 * the clock at once; `advance` fires the timers that come due, in order.
 */
class ManualTime implements Clock {
  private current = Date.parse('2026-12-05T12:00:00Z');
  /** What `advance` waits for after each timer it fires: the daemon's apply, if one started. */
  settle: () => Promise<void> = flush;
  private nextId = 1;
  private readonly due = new Map<number, Timer>();

  now(): number {
    return this.current;
  }

  sleep(ms: number): Promise<void> {
    this.current += ms;
    return Promise.resolve();
  }

  /** Timers not cleared yet. */
  get pending(): number {
    return this.due.size;
  }

  readonly timers = {
    setTimeout: (callback: () => void, ms: number): unknown => this.add(callback, ms, undefined),
    setInterval: (callback: () => void, ms: number): unknown => this.add(callback, ms, ms),
    clearTimeout: (handle: unknown) => {
      this.due.delete(handle as number);
    },
    clearInterval: (handle: unknown) => {
      this.due.delete(handle as number);
    },
  };

  async advance(ms: number): Promise<void> {
    const until = this.current + ms;
    for (;;) {
      const [id, timer] =
        [...this.due].filter(([, t]) => t.at <= until).sort((a, b) => a[1].at - b[1].at)[0] ?? [];
      if (id === undefined || timer === undefined) break;
      this.current = Math.max(this.current, timer.at);
      if (timer.every === undefined) this.due.delete(id);
      else timer.at += timer.every;
      timer.callback();
      await this.settle();
    }
    this.current = Math.max(this.current, until);
  }

  private add(callback: () => void, ms: number, every: number | undefined): number {
    const id = this.nextId++;
    this.due.set(id, { at: this.current + ms, every, callback });
    return id;
  }
}

/** A watch on the paths it was given that the test fires by hand. */
interface HandWatch {
  readonly paths: readonly string[];
  readonly change: (path: string) => void;
  readonly fail: (error: unknown) => void;
  closed: boolean;
}

/** What systemd would receive, one string per sd_notify call. */
function recordingNotifier(watchdogIntervalMs?: number): Notifier & { readonly sent: string[] } {
  const sent: string[] = [];
  return {
    sent,
    ready: (status) => {
      sent.push(`READY=1\nSTATUS=${status}`);
    },
    reloading: () => {
      sent.push('RELOADING=1');
    },
    stopping: () => {
      sent.push('STOPPING=1');
    },
    status: (text) => {
      sent.push(`STATUS=${text}`);
    },
    watchdog: () => {
      sent.push('WATCHDOG=1');
    },
    watchdogIntervalMs,
  };
}

interface LogEvent {
  /** The syslog priority of the journal prefix: 3 error, 4 warning, 6 info, 7 debug. */
  readonly priority: number;
  readonly msg: string;
  readonly trigger?: string;
  readonly outcome?: string;
  readonly code?: string;
  readonly error?: string;
  readonly kernelRead?: string;
  /** What a boot would not load (the start's warning). */
  readonly problem?: string;
}

let sandbox: Sandbox;
let table: FakeNatTable;
let time: ManualTime;
let watches: HandWatch[];
let notifier: ReturnType<typeof recordingNotifier>;
let lines: string[];
let releases: number[];
let daemon: Daemon;
/** What the daemon asks of the boot (the CLI's asks nftables.conf with nftables). */
let bootProblem: ((config: Config) => BootProblem | undefined) | undefined;

/** config.yaml as the sandbox writes it, with the daemon's timings and `change` applied. */
function writeConfig(change: (config: Record<string, unknown>) => void = () => undefined): void {
  sandbox.writeConfig();
  const config = JSON.parse(readFileSync(sandbox.configFile, 'utf8')) as Record<string, unknown>;
  config.daemon = { settleMs: SETTLE_MS, verifyIntervalMs: VERIFY_MS };
  change(config);
  writeFileSync(sandbox.configFile, JSON.stringify(config, null, 2));
}

function newDaemon(runner: CommandRunner = table, watchdogIntervalMs?: number): Daemon {
  notifier = recordingNotifier(watchdogIntervalMs);
  releases = [];
  return new Daemon({
    configFile: sandbox.configFile,
    loadConfig,
    discover,
    watch: (paths, onChange, onError): SourceWatcher => {
      const watch: HandWatch = { paths, change: onChange, fail: onError, closed: false };
      watches.push(watch);
      return {
        close: () => {
          watch.closed = true;
          return Promise.resolve();
        },
      };
    },
    runner,
    clock: time,
    timers: time.timers,
    // As under systemd: journal priority prefixes, and every apply logged (debug).
    logger: createLogger({ JOURNAL_STREAM: '8:1' }, (text) => lines.push(text), 'debug'),
    notifier,
    releaseMemory: () => {
      // Each release comes after an apply is logged: the number of applies so far.
      releases.push(applies().length);
    },
    bootProblem,
  });
}

beforeEach(() => {
  sandbox = createSandbox('iptables');
  sandbox.writeProfiles([ALPHA, BETA]);
  writeConfig();
  table = new FakeNatTable();
  time = new ManualTime();
  time.settle = async () => {
    await flush();
    await daemon.idle();
  };
  watches = [];
  lines = [];
  bootProblem = undefined;
  daemon = newDaemon();
});

afterEach(async () => {
  await daemon.stop();
  sandbox.remove();
});

function events(): LogEvent[] {
  return lines.map((line) => {
    const match = /^<(\d)>(\{.*\})\n$/s.exec(line);
    if (!match?.[2]) throw new Error(`not a journal line: ${line}`);
    return { priority: Number(match[1]), ...(JSON.parse(match[2]) as Omit<LogEvent, 'priority'>) };
  });
}

/** One event per apply the daemon ran (verified, applied, repaired or failed). */
const applies = () =>
  events().filter((event) => event.outcome !== undefined || event.msg.startsWith('apply failed'));
const errors = () => events().filter((event) => event.priority <= 3);
const archives = () => readdirSync(sandbox.archiveDir).filter((name) => !name.startsWith('.'));
const kernelLoads = () =>
  table.calls.filter((call) => call.startsWith('iptables-restore') && !call.includes('--test'));
const watching = () => watches.filter((watch) => !watch.closed);

/** An eduVPN file changed: what the watch reports. */
function changed(): void {
  for (const watch of watching()) watch.change(sandbox.portalConfig);
}

/** Our chains and jump: in the table's save, or in the rules file. */
function ours(text: string) {
  const { chains, jump } = extractNatPart(text);
  return { jump, chains: [...chains] };
}

/** The portal configuration as it is on disk now. */
function portalText(): string {
  return readFileSync(sandbox.portalConfig, 'utf8');
}

const rulesFile = () => readFileSync(sandbox.rulesFile, 'utf8');

/** The start's warnings that a boot would not load our rules. */
const bootWarnings = () =>
  events().filter((event) => event.msg === 'a boot does not load our rules');

/** A hand-made drift: one leaf chain of ours emptied in the kernel behind the daemon's back. */
function emptyOneLeafChain(): void {
  const leaf =
    ours(table.save()).chains.find(([, rules]) =>
      rules.some((rule) => rule.includes('SNAT')),
    )?.[0] ?? '';
  table.load(`*nat\n:${leaf} - [0:0]\nCOMMIT\n`);
}

test('start: one full apply, then READY=1 with a status naming what is active and its archive', async () => {
  await daemon.start();

  expect(applies()).toMatchObject([{ trigger: 'start', outcome: 'applied', kernelRead: 'full' }]);
  expect(archives()).toHaveLength(1);
  expect(ours(table.save())).toEqual(ours(rulesFile()));
  const status = `503 clients on 192.0.2.1, 64 ports each (iptables); archive ${join(sandbox.archiveDir, archives()[0] ?? '')}`;
  expect(notifier.sent).toEqual([`STATUS=${status}`, `READY=1\nSTATUS=${status}`]);
  expect(daemon.status()).toBe(status);
  // Every eduVPN path is watched, from before the first apply on.
  expect(watching()).toHaveLength(1);
  expect(watching()[0]?.paths).toContain(sandbox.portalConfig);
  expect(
    events()
      .filter((event) => event.priority === 6)
      .map((event) => event.msg),
  ).toEqual(['daemon starting', 'ruleset applied', 'daemon ready']);
});

test('at start, after the first apply, a boot file that does not load our rules is said once, as a warning', async () => {
  // A real nftables.conf as eduVPN writes it, without our include.
  const bootFile = join(sandbox.dir, 'nftables.conf');
  writeFileSync(bootFile, '#!/usr/sbin/nft -f\nflush ruleset\ntable inet filter {\n}\n');
  bootProblem = (config) => nftBootProblem(config.firewall.rulesFile, [bootFile]);
  daemon = newDaemon();
  await daemon.start();
  expect(bootWarnings()).toHaveLength(1);
  expect(bootWarnings()[0]?.priority).toBe(4);
  expect(bootWarnings()[0]?.problem).toContain(`${bootFile} does not include ${sandbox.rulesFile}`);
  // It follows the apply and READY=1: the rules are active whatever the boot would load.
  const messages = events().map((event) => event.msg);
  expect(messages.indexOf('daemon ready')).toBeLessThan(
    messages.indexOf('a boot does not load our rules'),
  );
  await daemon.stop();

  // With the include, a restart says nothing of the boot.
  writeFileSync(bootFile, `flush ruleset\n${includeLineFor(sandbox.rulesFile)}\n`);
  lines = [];
  daemon = newDaemon();
  await daemon.start();
  expect(bootWarnings()).toEqual([]);
  expect(events().map((event) => event.msg)).toContain('daemon ready');
});

// Targets are told from chains by this machine's iptables extensions: none without iptables.
const withIptables = targetKnownIn(xtablesDirs(), 4) ? test : test.skip;

withIptables(
  'at start, an operator rule in rules.v4 that a boot would refuse is said once, as a warning',
  async () => {
    // fail2ban's chain, created at run time and never declared in the file: the boot's
    // iptables-restore refuses the whole file for it.
    writeFileSync(
      sandbox.rulesFile,
      '*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j f2b-sshd\nCOMMIT\n',
    );
    bootProblem = ({ firewall }) => iptablesBootProblem([{ file: firewall.rulesFile, family: 4 }]);
    daemon = newDaemon();
    await daemon.start();
    const said = bootWarnings();
    expect(said).toHaveLength(1);
    expect(said[0]?.priority).toBe(4);
    expect(said[0]?.problem).toContain(
      `${sandbox.rulesFile} would not load at boot: line 3 jumps to f2b-sshd`,
    );
    // The rules are applied all the same: the kernel holds them now.
    expect(applies()).toMatchObject([{ trigger: 'start', outcome: 'applied' }]);
  },
);

test('a burst of changes within the settle time, half-written files among them, gives one apply of the last version', async () => {
  await daemon.start();
  const complete = renderPortalConfig([ALPHA, BETA, GAMMA]);
  for (let i = 0; i < 10; i++) {
    // Written in two steps, as a slow writer would: each half is reported.
    writeFileSync(sandbox.portalConfig, complete.slice(0, complete.length / 2));
    changed();
    await time.advance(SETTLE_MS / 4);
    writeFileSync(sandbox.portalConfig, complete);
    changed();
    await time.advance(SETTLE_MS / 4);
  }
  expect(applies()).toHaveLength(1);

  await time.advance(SETTLE_MS);
  await time.advance(SETTLE_MS * 5);
  expect(applies()).toMatchObject([
    { trigger: 'start' },
    { trigger: 'change', outcome: 'applied' },
  ]);
  expect(errors()).toEqual([]);
  expect(archives()).toHaveLength(2);
  // The memory of each apply is given back once it is done.
  expect(releases).toEqual([1, 2]);
  expect(table.save()).toContain('-s 10.42.2.2/32');
  expect(daemon.status()).toMatch(/^756 clients on 192\.0\.2\.1/);
});

test('a change that makes no difference: no kernel load, no read of the table, no archive, the rules file as it was', async () => {
  await daemon.start();
  const fileBefore = rulesFile();
  const archivesBefore = archives();
  table.calls.length = 0;
  // The same profiles, written again in another layout.
  const layout = portalText().replace(/\n {8}/g, '\n  ');
  expect(layout).not.toBe(portalText());
  writeFileSync(sandbox.portalConfig, layout);
  changed();
  await time.advance(SETTLE_MS);

  expect(applies().at(-1)).toMatchObject({ trigger: 'change', outcome: 'unchanged' });
  // Not even a read: a change trusts the ruleset this daemon applied last.
  expect(table.calls).toEqual([]);
  expect(archives()).toEqual(archivesBefore);
  expect(rulesFile()).toBe(fileBefore);
});

test('a profile file cut mid-write: one error, the rules stay, the daemon goes on and applies the repaired file', async () => {
  await daemon.start();
  const tableBefore = table.save();
  const archivesBefore = archives();
  const text = portalText();
  writeFileSync(sandbox.portalConfig, text.slice(0, text.length / 2));
  changed();
  await time.advance(SETTLE_MS);

  expect(errors()).toMatchObject([
    { msg: 'apply failed, the active rules stay', trigger: 'change', code: 'E_SOURCE' },
  ]);
  expect(errors()[0]?.error).toContain(sandbox.portalConfig);
  expect(table.save()).toBe(tableBefore);
  expect(archives()).toEqual(archivesBefore);
  expect(notifier.sent.at(-1)).toMatch(/^STATUS=503 clients on .*; last error: .*config\.php/);

  // The periodic check meets the same error: not logged again.
  await time.advance(VERIFY_MS);
  expect(applies().at(-1)).toMatchObject({ msg: 'apply failed, the active rules stay' });
  expect(errors()).toHaveLength(1);

  // Still listening: the repaired file is applied, and the error is gone from the status.
  writeFileSync(sandbox.portalConfig, renderPortalConfig([ALPHA, BETA, GAMMA]));
  changed();
  await time.advance(SETTLE_MS);
  expect(applies().at(-1)).toMatchObject({ trigger: 'change', outcome: 'applied' });
  expect(table.save()).toContain('-s 10.42.2.2/32');
  expect(notifier.sent.at(-1)).not.toContain('last error');
});

test('the rules file edited in place while a change settles, after the daemon read it back: the apply sees the edit', async () => {
  await daemon.start();
  const before = rulesFile();
  table.calls.length = 0;
  // The settle begins: the daemon reads its plan's text back from the rules file now.
  changed();
  // Then one digit of a port changes, the file's size and modification time as they were.
  const at = /--to-source 192\.0\.2\.\d+:\d/.exec(before);
  if (!at) throw new Error('no translation in the rules file');
  const digit = at.index + at[0].length - 1;
  const edited =
    before.slice(0, digit) + (before[digit] === '1' ? '2' : '1') + before.slice(digit + 1);
  const { mtime } = statSync(sandbox.rulesFile);
  writeFileSync(sandbox.rulesFile, edited);
  utimesSync(sandbox.rulesFile, mtime, mtime);
  const config = loadConfig(sandbox.configFile);
  const expected = planFromDisk(config, discover(config)).fileText;
  await time.advance(SETTLE_MS);

  // Not trusted: the kernel was read (whole: the file is not the newest archive's ruleset), and
  // the file holds what a dry run plans.
  expect(applies().at(-1)).toMatchObject({ trigger: 'change', kernelRead: 'full' });
  expect(table.calls.length).toBeGreaterThan(0);
  expect(rulesFile() === expected).toBe(true);
  expect(rulesFile() === edited).toBe(false);
});

test("the rules file's directory read-only after the start: one error, no archive, the kernel as it was; the periodic check applies once it is writable (guard)", async () => {
  // What ProtectSystem=strict does to an /etc/iptables left out of ReadWritePaths= (EROFS; root
  // writes through any mode bits). Skipped when this process may not mount.
  const rulesDir = join(sandbox.dir, 'iptables');
  mkdirSync(rulesDir);
  writeConfig((config) => {
    (config.firewall as Record<string, unknown>).rulesFile = join(rulesDir, 'rules.v4');
  });
  daemon = newDaemon();
  await daemon.start();
  const tableBefore = table.save();
  const archivesBefore = archives();
  try {
    execFileSync('mount', ['--bind', rulesDir, rulesDir]);
  } catch {
    return;
  }
  try {
    execFileSync('mount', ['-o', 'remount,ro,bind', rulesDir]);
    writeFileSync(sandbox.portalConfig, renderPortalConfig([ALPHA, BETA, GAMMA]));
    changed();
    await time.advance(SETTLE_MS);
    await time.advance(VERIFY_MS * 2);
    expect(errors()).toMatchObject([
      { msg: 'apply failed, the active rules stay', trigger: 'change', code: 'E_WRITE' },
    ]);
    expect(errors()[0]?.error).toContain('EROFS');
    // The periodic checks meet the same error: tried, not logged again.
    expect(applies()).toHaveLength(2);
    expect(table.save()).toBe(tableBefore);
    expect(archives()).toEqual(archivesBefore);
    expect(notifier.sent.at(-1)).toMatch(/^STATUS=503 clients on .*; last error: .*EROFS/);
  } finally {
    execFileSync('umount', [rulesDir]);
  }
  await time.advance(VERIFY_MS);
  expect(applies().at(-1)).toMatchObject({ trigger: 'verify', outcome: 'applied' });
  expect(table.save()).toContain('-s 10.42.2.2/32');
  expect(archives()).toHaveLength(archivesBefore.length + 1);
  expect(notifier.sent.at(-1)).toMatch(/^STATUS=756 clients on [^;]*; archive [^;]*$/);
});

test('a hand-made drift: unseen by a change (which trusts the last apply), repaired by the periodic check', async () => {
  await daemon.start();
  emptyOneLeafChain();
  const drifted = table.save();
  expect(ours(drifted)).not.toEqual(ours(rulesFile()));

  changed();
  await time.advance(SETTLE_MS);
  expect(applies().at(-1)).toMatchObject({ trigger: 'change', outcome: 'unchanged' });
  expect(table.save()).toBe(drifted);

  await time.advance(VERIFY_MS);
  expect(applies().at(-1)).toMatchObject({
    priority: 4,
    msg: 'kernel had drifted, ruleset loaded again',
    trigger: 'verify',
    outcome: 'repaired',
    kernelRead: 'full',
  });
  expect(ours(table.save())).toEqual(ours(rulesFile()));
  expect(archives()).toHaveLength(1);
});

test('a periodic check that falls in a settle does not cut it short: one full apply after the quiet time', async () => {
  await daemon.start();
  await time.advance(VERIFY_MS - SETTLE_MS / 2);
  const complete = renderPortalConfig([ALPHA, BETA, GAMMA]);
  writeFileSync(sandbox.portalConfig, complete.slice(0, complete.length / 2));
  changed();
  await time.advance(SETTLE_MS / 2);
  expect(applies()).toHaveLength(1);

  writeFileSync(sandbox.portalConfig, complete);
  changed();
  await time.advance(SETTLE_MS);
  expect(applies()).toMatchObject([
    { trigger: 'start' },
    { trigger: 'verify', outcome: 'applied', kernelRead: 'full' },
  ]);
  expect(errors()).toEqual([]);
});

test('files that never go quiet hold off neither the periodic check nor their own apply: both come within verifyIntervalMs (found by an audit)', async () => {
  await daemon.start();
  // A hand-made drift, and a writer that touches the portal configuration twice per settle time.
  emptyOneLeafChain();
  expect(ours(table.save())).not.toEqual(ours(rulesFile()));
  const complete = renderPortalConfig([ALPHA, BETA, GAMMA]);
  writeFileSync(sandbox.portalConfig, complete);
  await time.advance(SETTLE_MS / 4);
  for (let waited = 0; waited < VERIFY_MS * 2; waited += SETTLE_MS / 2) {
    changed();
    await time.advance(SETTLE_MS / 2);
  }

  // Every settle restarted at each write: without a bound, no apply at all, the drift unrepaired.
  // With it, each settle runs verifyIntervalMs after its first change, as the full check that
  // the periodic one, deferred into it, asked for.
  expect(applies().slice(1)).toMatchObject([
    { trigger: 'verify', outcome: 'applied', kernelRead: 'full' },
    { trigger: 'verify', outcome: 'unchanged', kernelRead: 'full' },
  ]);
  expect(ours(table.save())).toEqual(ours(rulesFile()));
  expect(table.save()).toContain('-s 10.42.2.2/32');
  expect(errors()).toEqual([]);
});

test('reload reads the configuration again: new addresses applied, the new paths watched', async () => {
  await daemon.start();
  const movedPortal = join(sandbox.dir, 'portal.php');
  writeFileSync(movedPortal, renderPortalConfig([ALPHA, BETA, GAMMA]));
  writeConfig((config) => {
    Object.assign(config.nat as object, { publicAddresses: ['192.0.2.7'] });
    Object.assign(config.eduvpn as object, { portalConfig: movedPortal });
  });
  notifier.sent.length = 0;

  await daemon.reload();
  expect(applies().at(-1)).toMatchObject({ trigger: 'reload', outcome: 'applied' });
  expect(table.save()).toMatch(/-s 10\.42\.2\.2\/32 -p tcp -j SNAT --to-source 192\.0\.2\.7:/);
  expect(table.save()).not.toContain('192.0.2.1');
  expect(notifier.sent[0]).toBe('RELOADING=1');
  expect(notifier.sent.at(-1)).toMatch(
    /^READY=1\nSTATUS=756 clients on 192\.0\.2\.7, 64 ports each/,
  );
  expect(watching()).toHaveLength(1);
  expect(watching()[0]?.paths).toContain(movedPortal);
  expect(watches[0]?.closed).toBe(true);
});

test('reload takes a new settle time: the next change waits for it (found by an audit)', async () => {
  await daemon.start();
  writeConfig((config) => {
    config.daemon = { settleMs: SETTLE_MS * 5, verifyIntervalMs: VERIFY_MS };
  });
  await daemon.reload();
  const before = applies().length;
  writeFileSync(sandbox.portalConfig, renderPortalConfig([ALPHA, BETA, GAMMA]));
  changed();
  await time.advance(SETTLE_MS * 2);
  expect(applies()).toHaveLength(before);
  await time.advance(SETTLE_MS * 3);
  expect(applies().slice(before)).toMatchObject([{ trigger: 'change', outcome: 'applied' }]);
});

test('reload while a change settles does not cut it short: no read of the half-written file, one full apply after the quiet time (found by an audit)', async () => {
  await daemon.start();
  const tableBefore = table.save();
  const archivesBefore = archives();
  const complete = renderPortalConfig([ALPHA, BETA, GAMMA]);
  writeFileSync(sandbox.portalConfig, complete.slice(0, complete.length / 2));
  changed();
  await time.advance(SETTLE_MS / 2);
  notifier.sent.length = 0;

  await daemon.reload();
  // The reload's own apply read the half-written file: an error in the journal and in STATUS=,
  // for a file that was only being written.
  expect(errors()).toEqual([]);
  expect(applies()).toHaveLength(1);
  expect(table.save()).toBe(tableBefore);
  expect(archives()).toEqual(archivesBefore);
  expect(notifier.sent[0]).toBe('RELOADING=1');
  expect(notifier.sent.at(-1)).toMatch(
    /^READY=1\nSTATUS=503 clients on 192\.0\.2\.1[^;]*; archive [^;]*$/,
  );

  writeFileSync(sandbox.portalConfig, complete);
  changed();
  await time.advance(SETTLE_MS);
  expect(applies()).toMatchObject([
    { trigger: 'start' },
    { trigger: 'reload', outcome: 'applied', kernelRead: 'full' },
  ]);
  expect(errors()).toEqual([]);
  expect(table.save()).toContain('-s 10.42.2.2/32');
  expect(notifier.sent.at(-1)).toMatch(/^STATUS=756 clients/);
});

test('reload with an invalid configuration keeps the previous one and says why', async () => {
  await daemon.start();
  const tableBefore = table.save();
  writeConfig((config) => {
    Object.assign(config.nat as object, { bogus: 1, publicAddresses: ['192.0.2.7'] });
  });

  await daemon.reload();
  expect(errors()).toMatchObject([{ msg: 'configuration rejected, keeping the previous one' }]);
  expect(notifier.sent.at(-1)).toMatch(
    /^READY=1\nSTATUS=503 clients on 192\.0\.2\.1.*; last error: configuration not reloaded: /s,
  );
  expect(applies().at(-1)).toMatchObject({ trigger: 'reload', outcome: 'unchanged' });
  expect(table.save()).toBe(tableBefore);
  // The watch of the previous configuration goes on.
  expect(watches).toHaveLength(1);
  expect(watching()).toHaveLength(1);

  // Put right and reloaded again: applied, and the refusal is gone from the status.
  writeConfig((config) => {
    Object.assign(config.nat as object, { publicAddresses: ['192.0.2.7'] });
  });
  await daemon.reload();
  expect(errors()).toHaveLength(1);
  expect(applies().at(-1)).toMatchObject({ trigger: 'reload', outcome: 'applied' });
  expect(table.save()).toContain('192.0.2.7');
  expect(notifier.sent.at(-1)).toMatch(
    /^READY=1\nSTATUS=503 clients on 192\.0\.2\.7[^;]*; archive [^;]*$/,
  );
});

test('reload with a YAML alias that has no anchor: E_CONFIG with its place, no stack', async () => {
  await daemon.start();
  writeFileSync(
    sandbox.configFile,
    readFileSync(sandbox.configFile, 'utf8').replace(
      `"settleMs": ${String(SETTLE_MS)}`,
      '"settleMs": *nope',
    ),
  );

  await daemon.reload();
  expect(errors()).toMatchObject([
    {
      msg: 'configuration rejected, keeping the previous one',
      code: 'E_CONFIG',
      error: expect.stringMatching(
        /config\.yaml:\d+:\d+: unresolved alias \*nope: define the anchor &nope before it$/,
      ) as unknown,
    },
  ]);
});

test('stop: STOPPING=1, the rules stay in place, nothing watched or timed any more', async () => {
  daemon = newDaemon(table, 10_000);
  await daemon.start();
  await time.advance(25_000);
  expect(notifier.sent.filter((message) => message === 'WATCHDOG=1')).toHaveLength(2);
  const tableBefore = table.save();
  table.calls.length = 0;

  await daemon.stop();
  expect(notifier.sent.at(-1)).toBe('STOPPING=1');
  expect(table.save()).toBe(tableBefore);
  expect(kernelLoads()).toEqual([]);
  expect(watching()).toEqual([]);
  expect(time.pending).toBe(0);
  // A change reported late is not applied.
  sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
  watches[0]?.change(sandbox.portalConfig);
  await time.advance(VERIFY_MS * 2);
  expect(table.calls).toEqual([]);
});

test('a reload queued behind a stop (SIGHUP after SIGTERM) does nothing: no watch, no timer, no READY=1 (found by an audit)', async () => {
  await daemon.start();
  await daemon.stop();
  notifier.sent.length = 0;
  table.calls.length = 0;

  await daemon.reload();
  // It watched and timed again: a process that never exits (systemd kills it after
  // TimeoutStopSec), and READY=1 after STOPPING=1.
  expect(watching()).toEqual([]);
  expect(time.pending).toBe(0);
  expect(notifier.sent).toEqual([]);
  expect(table.calls).toEqual([]);
});

test('stop during an apply waits for it to finish: the rules, the archive and the rules file are all there', async () => {
  let release: () => void = () => undefined;
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  let holding = false;
  /** Holds the kernel load of a change until the test releases it. */
  const slowLoad: CommandRunner = {
    run: async (command, args, options) => {
      if (holding && command === 'iptables-restore' && !args.includes('--test')) await held;
      return table.run(command, args, options);
    },
  };
  daemon = newDaemon(slowLoad);
  await daemon.start();
  holding = true;
  sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
  changed();
  // Not waiting for the apply: it is held until release().
  time.settle = flush;
  await time.advance(SETTLE_MS);
  expect(table.save()).not.toContain('-s 10.42.2.2/32');

  let stopped = false;
  const stopping = daemon.stop().then(() => {
    stopped = true;
  });
  await flush();
  expect(stopped).toBe(false);
  release();
  await stopping;
  expect(table.save()).toContain('-s 10.42.2.2/32');
  expect(archives()).toHaveLength(2);
  expect(rulesFile()).toContain('-s 10.42.2.2/32');
  expect(applies().at(-1)).toMatchObject({ trigger: 'change', outcome: 'applied' });
});

test('reload during an apply: the apply finishes on the configuration it began with, then one full apply on the new one, never overlapping (guard)', async () => {
  let release: () => void = () => undefined;
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  let holding = false;
  let loading = 0;
  let overlapped = false;
  const slowLoad: CommandRunner = {
    run: async (command, args, options) => {
      const load = command === 'iptables-restore' && !args.includes('--test');
      if (load) {
        loading++;
        if (loading > 1) overlapped = true;
      }
      try {
        if (holding && load) await held;
        return await table.run(command, args, options);
      } finally {
        if (load) loading--;
      }
    },
  };
  daemon = newDaemon(slowLoad);
  await daemon.start();
  holding = true;
  sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
  changed();
  time.settle = flush;
  await time.advance(SETTLE_MS);
  writeConfig((config) => {
    Object.assign(config.nat as object, { publicAddresses: ['192.0.2.7'] });
  });
  notifier.sent.length = 0;
  const reloading = daemon.reload();
  await flush();
  expect(notifier.sent).toEqual(['RELOADING=1']);

  holding = false;
  release();
  await reloading;
  expect(overlapped).toBe(false);
  expect(applies().slice(1)).toMatchObject([
    { trigger: 'change', outcome: 'applied' },
    { trigger: 'reload', outcome: 'applied', kernelRead: 'full' },
  ]);
  expect(table.save()).toMatch(/-s 10\.42\.2\.2\/32 -p tcp -j SNAT --to-source 192\.0\.2\.7:/);
  expect(table.save()).not.toContain('192.0.2.1');
  expect(notifier.sent.at(-1)).toMatch(/^READY=1\nSTATUS=756 clients on 192\.0\.2\.7/);
  expect(errors()).toEqual([]);
});

test('a first apply that fails on the environment: start throws before READY=1, nothing left running', async () => {
  writeFileSync(sandbox.archiveDir, 'not a directory\n');

  const error = await daemon.start().then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(isTnatError(error) && error.code).toBe('E_ARCHIVE');
  expect(notifier.sent.some((message) => message.startsWith('READY=1'))).toBe(false);
  expect(errors().at(-1)).toMatchObject({
    msg: 'daemon not started: the first apply failed',
    code: 'E_ARCHIVE',
  });
  expect(watching()).toEqual([]);
  expect(time.pending).toBe(0);
  expect(kernelLoads()).toEqual([]);
});

/** The fake table, where `conntrack` is not installed (as the process runner says so). */
class TableWithoutConntrack extends FakeNatTable {
  override run(command: string, args: readonly string[], options?: RunOptions) {
    if (command !== 'conntrack') return super.run(command, args, options);
    this.calls.push([command, ...args].join(' '));
    return Promise.reject(
      new CommandError('conntrack is not installed: install it (apt-get install conntrack)', {
        command: [command, ...args],
        exitCode: null,
        stderr: '',
      }),
    );
  }
}

test('conntrack not installed: the rules are applied, then start throws before READY=1, saying what to do', async () => {
  table = new TableWithoutConntrack();
  daemon = newDaemon(table);
  const error = await daemon.start().then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(CommandError);
  expect(isEnvironmentFailure(error)).toBe(true);
  expect(String(error)).toContain(
    'conntrack is not installed: install it (apt-get install conntrack), or set firewall.flushConntrack: false',
  );
  expect(notifier.sent.some((message) => message.startsWith('READY=1'))).toBe(false);
  expect(errors().at(-1)).toMatchObject({
    msg: 'daemon not started: conntrack is not installed',
    code: 'E_COMMAND',
  });
  // The firewall is not lost for it: the first apply loaded the rules before the check.
  expect(kernelLoads()).toHaveLength(1);
  expect(table.save()).toContain('-s 10.42.0.2/32');
  expect(watching()).toEqual([]);
  expect(time.pending).toBe(0);
});

test('conntrack not installed and firewall.flushConntrack: false: the daemon starts', async () => {
  writeConfig((config) => {
    (config.firewall as Record<string, unknown>).flushConntrack = false;
  });
  table = new TableWithoutConntrack();
  daemon = newDaemon(table);
  await daemon.start();
  expect(notifier.sent.at(-1)).toMatch(/^READY=1\nSTATUS=503 clients/);
  expect(table.calls.some((call) => call.startsWith('conntrack'))).toBe(false);
});

test('a first apply that fails on the eduVPN files: READY=1 all the same, the status says what is wrong', async () => {
  writeFileSync(sandbox.portalConfig, "<?php\nreturn ['ProfileList' => [\n");

  await daemon.start();
  expect(notifier.sent.at(-1)).toMatch(
    /^READY=1\nSTATUS=no ruleset applied yet; last error: .*config\.php/,
  );
  expect(kernelLoads()).toEqual([]);
  expect(watching()).toHaveLength(1);

  // The watch is there for the repair.
  sandbox.writeProfiles([ALPHA, BETA]);
  changed();
  await time.advance(SETTLE_MS);
  expect(applies().at(-1)).toMatchObject({ trigger: 'change', outcome: 'applied' });
  expect(daemon.status()).toMatch(/^503 clients/);
});

test('a failing watch is logged as a warning, and the daemon goes on', async () => {
  await daemon.start();
  watching()[0]?.fail(Object.assign(new Error('inotify watch limit reached'), { code: 'ENOSPC' }));
  expect(events().at(-1)).toMatchObject({ priority: 4, msg: 'watching the eduVPN files failed' });
  expect(events().at(-1)?.error).toContain('inotify watch limit reached');
  await time.advance(VERIFY_MS);
  expect(applies().at(-1)).toMatchObject({ trigger: 'verify', outcome: 'unchanged' });
});
