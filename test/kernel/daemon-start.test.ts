/**
 * The daemon's start under a real notify socket (issue 12): a first apply that fails on the
 * environment exits non-zero before READY=1, so systemd reports the start as failed and
 * Restart= tries again; one that fails on the eduVPN files sends READY=1 with STATUS= saying
 * what is wrong and stays up. Real iptables in a network namespace, the real program.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createTopology, isRoot, type Topology } from '../helpers/netns.js';
import { collectLines, type LineLog } from '../helpers/process-lines.js';
import { createSandbox, type Sandbox } from '../helpers/sandbox.js';

interface Started {
  readonly daemon: ChildProcess;
  readonly log: LineLog;
  readonly notifications: LineLog;
  readonly exit: Promise<number | null>;
}

const IP = execFileSync('sh', ['-c', 'command -v ip'], { encoding: 'utf8' }).trim();

/** The exit status, or 'running' if it has not exited within ms. */
async function exitWithin(
  exit: Promise<number | null>,
  ms: number,
): Promise<number | null | 'running'> {
  let timer: NodeJS.Timeout | undefined;
  const running = new Promise<'running'>((resolveRunning) => {
    timer = setTimeout(() => {
      resolveRunning('running');
    }, ms);
  });
  try {
    return await Promise.race([exit, running]);
  } finally {
    clearTimeout(timer);
  }
}

// Kernel tests need root for network namespaces; CI runs as root.
const describeKernel = isRoot() ? describe : describe.skip;

describeKernel('the first apply decides whether the daemon starts', () => {
  let net: Topology;
  let sandbox: Sandbox;
  const children: ChildProcess[] = [];
  const mounted: string[] = [];

  beforeEach(() => {
    net = createTopology([]);
    sandbox = createSandbox('iptables');
    sandbox.writeProfiles([{ id: 'alpha', wireguard: '10.42.0.0/24' }]);
    sandbox.writeConfig();
  });

  afterEach(() => {
    for (const child of children.splice(0)) child.kill('SIGKILL');
    for (const dir of mounted.splice(0)) execFileSync('umount', [dir]);
    (net as Topology | undefined)?.destroy();
    (sandbox as Sandbox | undefined)?.remove();
  });

  async function startDaemon(env: Record<string, string> = {}): Promise<Started> {
    const socket = join(sandbox.dir, 'notify.sock');
    const listener = spawn('python3', [resolve('test/helpers/notify-listener.py'), socket, '60']);
    children.push(listener);
    const notifications = collectLines(listener);
    await notifications.waitFor((line) => line.includes('listening'), 10000);
    // Node by its absolute path, so a PATH without the firewall tools still starts it.
    const daemon = spawn(
      IP,
      [
        'netns',
        'exec',
        net.gateway,
        process.execPath,
        resolve('bin/traceable-nat'),
        'daemon',
        '--config',
        sandbox.configFile,
      ],
      {
        env: { ...process.env, NOTIFY_SOCKET: socket, JOURNAL_STREAM: '8:1', ...env },
      },
    );
    children.push(daemon);
    const exit = new Promise<number | null>((resolveExit) => {
      daemon.on('exit', (code) => {
        resolveExit(code);
      });
    });
    return { daemon, log: collectLines(daemon), notifications, exit };
  }

  const messages = (log: LineLog): string[] => log.lines;
  const sent = (notifications: LineLog): string[] =>
    notifications.lines.map((line) => (JSON.parse(line) as { message?: string }).message ?? '');
  const nat = () => net.exec(net.gateway, ['iptables-save', '-t', 'nat']);

  test.each([
    [
      'the archive directory is a file',
      () => {
        writeFileSync(sandbox.archiveDir, 'not a directory\n');
        return {};
      },
      /"code":"E_ARCHIVE".*ENOTDIR/,
    ],
    [
      'the archive directory is read-only',
      () => {
        // Root writes through any mode bits; a read-only mount stops it (EROFS).
        mkdirSync(sandbox.archiveDir);
        execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tnat-ro', sandbox.archiveDir]);
        mounted.push(sandbox.archiveDir);
        return {};
      },
      /"code":"E_WRITE".*EROFS/,
    ],
    [
      'iptables is not installed (not on PATH)',
      () => ({ PATH: '/var/empty' }),
      /"code":"E_COMMAND".*is not installed/,
    ],
  ])('%s: exit 4 before READY=1, logged as an error', async (_what, prepare, pattern) => {
    const env = prepare();
    const { log, notifications, exit } = await startDaemon(env);
    expect(await exitWithin(exit, 20000)).toBe(4);
    const notStarted = messages(log).find((line) => line.includes('daemon not started'));
    expect(notStarted).toMatch(/^<3>\{/);
    expect(notStarted).toMatch(pattern);
    // The listener prints a datagram as soon as it arrives; give a late one a moment.
    await new Promise((wait) => setTimeout(wait, 200));
    expect(sent(notifications).join('\n')).not.toContain('READY=1');
    expect(nat()).not.toContain('TNAT');
  });

  test('a broken portal configuration: READY=1, STATUS= names the problem, the daemon stays up', async () => {
    writeFileSync(sandbox.portalConfig, "<?php\nreturn ['ProfileList' => [\n");
    const { daemon, notifications, exit } = await startDaemon();
    const ready = await notifications.waitFor((line) => line.includes('READY=1'), 20000);
    const message = (JSON.parse(ready) as { message: string }).message;
    expect(message).toMatch(/STATUS=no ruleset applied yet; last error: .*config\.php/);
    expect(await exitWithin(exit, 1000)).toBe('running');
    daemon.kill('SIGTERM');
    expect(await exitWithin(exit, 20000)).toBe(0);
  });

  test('with nat6 set, the daemon loads the IPv6 rules before READY=1, with no warning (issue 14)', async () => {
    sandbox.writeConfig({ nat: { publicAddresses: ['192.0.2.1'] } });
    const text = readFileSync(sandbox.configFile, 'utf8');
    const config = JSON.parse(text) as Record<string, unknown>;
    writeFileSync(
      sandbox.configFile,
      JSON.stringify({ ...config, nat6: { publicAddresses: ['2001:db8::1'] } }),
    );
    const { daemon, log, notifications, exit } = await startDaemon();
    await notifications.waitFor((line) => line.includes('READY=1'), 20000);
    expect(net.exec(net.gateway, ['ip6tables-save', '-t', 'nat'])).toMatch(
      /\/128 -p tcp -j SNAT --to-source \[2001:db8::1\]:\d+-\d+$/m,
    );
    expect(messages(log).filter((line) => /^<[0-4]>/.test(line))).toEqual([]);
    daemon.kill('SIGTERM');
    expect(await exitWithin(exit, 20000)).toBe(0);
  });
});
