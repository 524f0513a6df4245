/**
 * The systemd notifier. What reaches systemd is tested against a real unix datagram socket
 * (test/helpers/notify-listener.py binds it). The sd-notify addon finds the socket with
 * getenv(NOTIFY_SOCKET), which jest's copy of process.env does not reach, so the notifier runs
 * in a child node with NOTIFY_SOCKET in its environment, from notify.ts transpiled by esbuild.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { transformSync } from 'esbuild';
import { createNotifier } from '../../src/daemon/notify.js';
import { collectLines } from '../helpers/process-lines.js';

describe('createNotifier under a real NOTIFY_SOCKET', () => {
  let dir: string;
  let listener: ChildProcess | undefined;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tnat-notify-'));
  });

  afterEach(() => {
    listener?.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  test('each call is one datagram: READY=1 with its STATUS, RELOADING=1 with the monotonic time, STATUS, WATCHDOG=1, STOPPING=1', async () => {
    const socket = join(dir, 'notify.sock');
    listener = spawn('python3', [resolve('test/helpers/notify-listener.py'), socket, '60']);
    const received = collectLines(listener);
    await received.waitFor((line) => line.includes('listening'), 10000);

    const notifier = join(dir, 'notify.mjs');
    writeFileSync(
      notifier,
      transformSync(readFileSync('src/daemon/notify.ts', 'utf8'), { loader: 'ts' }).code,
    );
    const script = [
      `const { createNotifier } = await import(${JSON.stringify(pathToFileURL(notifier).href)});`,
      'const notifier = createNotifier(process.env);',
      "notifier.ready('503 clients on 192.0.2.1; archive /var/lib/a');",
      'notifier.reloading();',
      "notifier.status('last error: none');",
      'notifier.watchdog();',
      'notifier.stopping();',
      'console.log(JSON.stringify({ watchdogIntervalMs: notifier.watchdogIntervalMs }));',
    ].join('\n');
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      env: {
        ...process.env,
        NOTIFY_SOCKET: socket,
        WATCHDOG_USEC: '400000',
        // The transpiled file is outside the repository: sd-notify is found through NODE_PATH.
        NODE_PATH: resolve('node_modules'),
      },
    });
    expect(child.stderr).toBe('');
    expect(JSON.parse(child.stdout)).toEqual({ watchdogIntervalMs: 200 });

    await received.waitFor((line) => line.includes('STOPPING=1'), 10000);
    const datagrams = received.lines
      .map((line) => JSON.parse(line) as { message?: string; monotonicUsec?: number })
      .filter((datagram) => datagram.message !== undefined);
    expect(
      datagrams.map((datagram) =>
        datagram.message?.replace(/^MONOTONIC_USEC=\d+$/m, 'MONOTONIC_USEC=<n>'),
      ),
    ).toEqual([
      'READY=1\nSTATUS=503 clients on 192.0.2.1; archive /var/lib/a',
      'RELOADING=1\nMONOTONIC_USEC=<n>',
      'STATUS=last error: none',
      'WATCHDOG=1',
      'STOPPING=1',
    ]);
    // CLOCK_MONOTONIC, as systemd reads it: taken before the listener received it, on the
    // listener's clock (Python's time.monotonic).
    const reloading = datagrams[1];
    const sent = Number(/MONOTONIC_USEC=(\d+)/.exec(reloading?.message ?? '')?.[1]);
    expect(sent).toBeGreaterThan(0);
    expect(sent).toBeLessThanOrEqual(reloading?.monotonicUsec ?? 0);
  });
});

describe('createNotifier: when the watchdog counts (sd_watchdog_enabled)', () => {
  test.each([
    ['WATCHDOG_USEC alone', { WATCHDOG_USEC: '400000' }, 200],
    ['WATCHDOG_PID naming this process', { WATCHDOG_USEC: '400000', WATCHDOG_PID: 'self' }, 200],
    [
      'WATCHDOG_PID naming another process',
      { WATCHDOG_USEC: '400000', WATCHDOG_PID: '1' },
      undefined,
    ],
    ['no WATCHDOG_USEC', {}, undefined],
    ['WATCHDOG_USEC not a number', { WATCHDOG_USEC: 'soon' }, undefined],
    ['WATCHDOG_USEC zero', { WATCHDOG_USEC: '0' }, undefined],
  ])('%s', (_what, env: Record<string, string>, intervalMs) => {
    const pid = env.WATCHDOG_PID === 'self' ? String(process.pid) : env.WATCHDOG_PID;
    expect(createNotifier({ ...env, WATCHDOG_PID: pid }).watchdogIntervalMs).toBe(intervalMs);
  });
});
