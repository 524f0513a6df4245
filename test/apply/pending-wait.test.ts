/**
 * An interrupted apply's kernel command that is still running when the next apply comes: the
 * next apply waits for it, and when it does not end, refuses rather than read a kernel that
 * may take the pending ruleset a moment later (which would then be active unarchived).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolvePendingArchives } from '../../src/apply/pending.js';
import { prepareArchive } from '../../src/archive/store.js';
import { parseConfig } from '../../src/config.js';
import type { CommandRunner } from '../../src/netfilter/runner.js';
import type { Clock } from '../../src/system/clock.js';
import { processIdentity } from '../../src/system/process-alive.js';

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

function testConfig() {
  return parseConfig(
    `nat:\n  publicAddresses: [192.0.2.1]\n  outInterface: eth0\nfirewall:\n  archiveDir: ${dir}\n  stateFile: ${join(dir, 'state.json')}\n  lockTimeoutMs: 2000\n`,
    'test.yaml',
  );
}

function pendingArchive() {
  return prepareArchive(
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
}

test('a kernel command still running after the wait: refused, the pending archive kept', async () => {
  const config = testConfig();
  const pending = pendingArchive();
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

/** A runner whose kernel holds nothing of ours: the pending ruleset was never loaded. */
const emptyKernel: CommandRunner = {
  run: (command) =>
    Promise.resolve({
      stdout: command === 'iptables-save' ? '*nat\nCOMMIT\n' : '',
      stderr: '',
      exitCode: 0,
    }),
};

test('the recorded child is who it was: its PID now another process (after a reboot, say) is not waited for', async () => {
  const config = testConfig();
  pendingArchive().recordChild(child.pid ?? 0);
  const file = join(dir, '.rules.v4.pending.child');
  const [pid, identity] = readFileSync(file, 'utf8').trim().split(' ');
  // Recorded with who it is: this boot, its start time.
  expect(pid).toBe(String(child.pid));
  expect(identity).toBe(processIdentity(child.pid ?? 0));
  expect(identity).toMatch(/^[0-9a-f-]{36}:\d+$/);
  // The same PID, another process: a start time it never had (PID 1 alike: alive, not ours).
  for (const other of [`${String(child.pid)} ${identity ?? ''}0`, `1 ${identity ?? ''}`]) {
    writeFileSync(file, `${other}\n`);
    const clock = fastClock();
    const resolved = await resolvePendingArchives(config, emptyKernel, clock);
    expect(clock.slept).toBe(0);
    // Resolved at once (archived or dropped, by what the kernel holds), not refused.
    expect(resolved).toHaveLength(1);
    expect(existsSync(join(dir, 'rules.v4.pending'))).toBe(false);
    pendingArchive().recordChild(child.pid ?? 0);
  }
});

test('a bare PID (written before the identity was) is still waited for while it runs', async () => {
  const config = testConfig();
  pendingArchive();
  writeFileSync(join(dir, '.rules.v4.pending.child'), `${String(child.pid)}\n`);
  const clock = fastClock();
  await expect(resolvePendingArchives(config, noKernel, clock)).rejects.toMatchObject({
    code: 'E_LOCK',
  });
  expect(clock.slept).toBeGreaterThanOrEqual(15_000);
});
