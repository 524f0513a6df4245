/**
 * The real daemon, spawned in a network namespace with real iptables, talking to a real
 * sd_notify socket the test listens on, logging with journal priority prefixes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnDaemon } from '../helpers/daemon-process.js';
import { createTopology, isRoot, type Topology } from '../helpers/netns.js';
import { collectLines, type LineLog } from '../helpers/process-lines.js';
import { createSandbox, renderPortalConfig, type Sandbox } from '../helpers/sandbox.js';
import { ALPHA, BETA, DELTA, GAMMA } from '../helpers/profiles.js';

const SETTLE_MS = 400;

interface LogEvent {
  readonly priority: number;
  readonly msg: string;
  readonly outcome?: string;
  readonly trigger?: string;
}

function parseLog(line: string): LogEvent | undefined {
  const match = /^<(\d)>(\{.*\})$/.exec(line);
  if (!match?.[2]) return undefined;
  return { priority: Number(match[1]), ...(JSON.parse(match[2]) as Omit<LogEvent, 'priority'>) };
}

// Kernel tests need root for network namespaces; CI runs as root.
const describeKernel = isRoot() ? describe : describe.skip;

describeKernel('the daemon under a real notify socket', () => {
  let net: Topology;
  let sandbox: Sandbox;
  let listener: ChildProcess;
  let notifications: LineLog;
  let daemon: ChildProcess;
  let log: LineLog;
  let exit: Promise<number | null>;

  const events = (from = 0): LogEvent[] =>
    log.lines
      .slice(from)
      .map(parseLog)
      .filter((event): event is LogEvent => event !== undefined);
  /** Applies that changed the ruleset (the periodic check's "unchanged" runs are not counted). */
  const applies = (from = 0) =>
    events(from).filter((event) => event.outcome !== undefined && event.outcome !== 'unchanged');
  // Hidden files beside the archives are their binding indexes, no archives.
  const archives = () =>
    readdirSync(sandbox.archiveDir)
      .filter((name) => !name.startsWith('.'))
      .sort();
  const nat = () => net.exec(net.gateway, ['iptables-save', '-t', 'nat']).replace(/^#.*\n/gm, '');
  const notification = (pattern: RegExp, from = 0) =>
    notifications.waitFor(
      (line) => pattern.test((JSON.parse(line) as { message?: string }).message ?? ''),
      10000,
      from,
    );

  beforeAll(async () => {
    net = createTopology([]);
    sandbox = createSandbox('iptables');
    sandbox.writeProfiles([ALPHA, BETA]);
    sandbox.writeConfig();
    const config = JSON.parse(readFileSync(sandbox.configFile, 'utf8')) as Record<string, unknown>;
    writeFileSync(
      sandbox.configFile,
      JSON.stringify(
        { ...config, daemon: { settleMs: SETTLE_MS, verifyIntervalMs: 1500 } },
        null,
        2,
      ),
    );
    const socket = join(sandbox.dir, 'notify.sock');
    listener = spawn('python3', [resolve('test/helpers/notify-listener.py'), socket, '120']);
    notifications = collectLines(listener);
    await notifications.waitFor((line) => line.includes('listening'), 10000);
    daemon = spawnDaemon(net.gateway, sandbox.configFile, {
      NOTIFY_SOCKET: socket,
      WATCHDOG_USEC: '400000',
      JOURNAL_STREAM: '8:12345',
      TRACEABLE_NAT_LOG_LEVEL: 'debug',
    });
    log = collectLines(daemon);
    exit = new Promise((resolveExit) => {
      daemon.on('exit', (code) => {
        resolveExit(code);
      });
    });
  });

  afterAll(() => {
    // beforeAll may have failed half-way: clean up whatever exists.
    (daemon as ChildProcess | undefined)?.kill('SIGKILL');
    (listener as ChildProcess | undefined)?.kill();
    (net as Topology | undefined)?.destroy();
    (sandbox as Sandbox | undefined)?.remove();
  });

  test('READY=1 comes after the first apply, with a STATUS of what is active', async () => {
    const ready = await notification(/READY=1/);
    expect(ready).toMatch(
      /STATUS=503 clients on 192\.0\.2\.1, 64 ports each \(iptables\); archive .*rules\.v4\.\d+/,
    );
    expect(archives()).toHaveLength(1);
    expect(applies()[0]).toMatchObject({ trigger: 'start', outcome: 'applied' });
  });

  test('watchdog pings arrive at half of WATCHDOG_USEC', async () => {
    const from = notifications.lines.length;
    await sleep(1100);
    const pings = notifications.lines.slice(from).filter((line) => line.includes('WATCHDOG=1'));
    expect(pings.length).toBeGreaterThanOrEqual(3);
  });

  test('a profile added in the portal config applies once after the settle time', async () => {
    const from = log.lines.length;
    const before = archives().length;
    sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
    await log.waitFor((line) => parseLog(line)?.outcome === 'applied', 10000, from);
    await sleep(SETTLE_MS * 3);
    expect(archives()).toHaveLength(before + 1);
    expect(applies(from)).toHaveLength(1);
    expect(nat()).toContain('10.42.2.2/32');
  });

  test('a hundred rapid writes give exactly one apply', async () => {
    const from = log.lines.length;
    for (let i = 0; i < 100; i++) {
      writeFileSync(
        sandbox.portalConfig,
        renderPortalConfig(i % 2 ? [ALPHA, BETA] : [ALPHA, BETA, GAMMA, DELTA]),
      );
    }
    writeFileSync(sandbox.portalConfig, renderPortalConfig([ALPHA, BETA, GAMMA, DELTA]));
    await log.waitFor((line) => parseLog(line)?.outcome === 'applied', 10000, from);
    await sleep(SETTLE_MS * 4);
    expect(applies(from).map((event) => event.outcome)).toEqual(['applied']);
    expect(nat()).toContain('10.42.3.2/32');
  });

  test('a broken file keeps the old rules and logs an error with priority 3', async () => {
    const from = log.lines.length;
    const statusFrom = notifications.lines.length;
    const before = nat();
    const text = readFileSync(sandbox.portalConfig, 'utf8');
    writeFileSync(sandbox.portalConfig, text.slice(0, text.length / 2));
    const line = await log.waitFor(
      (entry) => parseLog(entry)?.msg === 'apply failed, the active rules stay',
      10000,
      from,
    );
    expect(line).toMatch(/^<3>/);
    expect(line).toContain('config.php:');
    expect(nat()).toBe(before);
    await notification(/STATUS=.*last error: .*config\.php/, statusFrom);
    writeFileSync(sandbox.portalConfig, text);
    await log.waitFor((entry) => parseLog(entry)?.outcome !== undefined, 10000, from);
  });

  test('SIGHUP gives RELOADING=1 with MONOTONIC_USEC, then READY=1; a bad config is refused', async () => {
    let from = notifications.lines.length;
    daemon.kill('SIGHUP');
    const reloading = JSON.parse(await notification(/RELOADING=1/, from)) as {
      message: string;
      monotonicUsec: number;
    };
    const usec = Number(/MONOTONIC_USEC=(\d+)/.exec(reloading.message)?.[1]);
    expect(Math.abs(usec - reloading.monotonicUsec)).toBeLessThan(5_000_000);
    await notification(/READY=1/, notifications.lines.indexOf(JSON.stringify(reloading)) + 1);

    const good = readFileSync(sandbox.configFile, 'utf8');
    writeFileSync(sandbox.configFile, good.replace('"nat": {', '"nat": { "bogus": 1,'));
    from = notifications.lines.length;
    const logFrom = log.lines.length;
    daemon.kill('SIGHUP');
    await notification(/RELOADING=1/, from);
    await notification(/READY=1.*last error: configuration not reloaded/s, from);
    expect(
      events(logFrom).some(
        (event) => event.priority === 3 && event.msg.startsWith('configuration rejected'),
      ),
    ).toBe(true);
    writeFileSync(sandbox.configFile, good);
  });

  test('the periodic check finds a flushed nat table and loads the rules again', async () => {
    const before = nat();
    const from = log.lines.length;
    net.exec(net.gateway, ['iptables', '-t', 'nat', '-F']);
    const line = await log.waitFor(
      (entry) => parseLog(entry)?.msg === 'kernel had drifted, ruleset loaded again',
      10000,
      from,
    );
    // The periodic check, or the full check of the previous test's reload if it ran late.
    expect(parseLog(line)).toMatchObject({
      priority: 4,
      trigger: expect.stringMatching(/^(verify|reload)$/) as unknown,
      outcome: 'repaired',
    });
    expect(nat()).toBe(before);
  });

  test('SIGTERM gives STOPPING=1 and exit 0, and the rules stay in place', async () => {
    const before = nat();
    const from = notifications.lines.length;
    daemon.kill('SIGTERM');
    await notification(/STOPPING=1/, from);
    expect(await exit).toBe(0);
    expect(nat()).toBe(before);
    expect(before).toContain(':TNAT ');
  });
});
