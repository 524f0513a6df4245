/**
 * An interrupted apply's kernel command that is still running when the next apply comes: the
 * next apply waits for it, and when it does not end, refuses rather than read a kernel that
 * may take the pending ruleset a moment later (which would then be active unarchived).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolvePendingArchives } from '../../src/apply/pending.js';
import { prepareArchive } from '../../src/archive/store.js';
import { parseConfig } from '../../src/config.js';
import type { CommandRunner } from '../../src/netfilter/runner.js';
import type { Clock } from '../../src/system/clock.js';

let dir: string;
let child: ChildProcess;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tnat-pending-'));
  child = spawn('sleep', ['60'], { stdio: 'ignore' });
});
afterEach(() => {
  child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

/** A clock whose sleeps pass at once, so a wait of minutes takes no time. */
function fastClock(): Clock & { slept: number } {
  let now = Date.UTC(2026, 11, 5);
  const clock = {
    slept: 0,
    now: () => now,
    sleep: (ms: number) => {
      now += ms;
      clock.slept += ms;
      return Promise.resolve();
    },
  };
  return clock;
}

/** Any kernel read fails the test: nothing may be decided while the child runs. */
const noKernel: CommandRunner = {
  run: (command) => Promise.reject(new Error(`the kernel was read (${command})`)),
};

test('a kernel command still running after the wait: refused, the pending archive kept', async () => {
  const config = parseConfig(
    `nat:\n  publicAddresses: [192.0.2.1]\n  outInterface: eth0\nfirewall:\n  archiveDir: ${dir}\n  stateFile: ${join(dir, 'state.json')}\n  lockTimeoutMs: 2000\n`,
    'test.yaml',
  );
  const pending = prepareArchive(
    dir,
    {
      tool: 'test',
      backend: 'iptables',
      applyStarted: new Date().toISOString(),
      reason: 'first',
      clients: 0,
      settings: {},
    },
    '*nat\nCOMMIT\n',
    undefined,
  );
  pending.recordChild(child.pid ?? 0);
  const clock = fastClock();

  await expect(resolvePendingArchives(config, noKernel, clock)).rejects.toMatchObject({
    code: 'E_LOCK',
    message: expect.stringMatching(
      new RegExp(`interrupted apply \\(pid ${String(child.pid)}\\) is still running after 15 s`),
    ) as unknown,
  });
  // It waited at least 15 s (more than the 2 s lock timeout), and decided nothing.
  expect(clock.slept).toBeGreaterThanOrEqual(15_000);
  expect(existsSync(join(dir, 'rules.v4.pending'))).toBe(true);
});
