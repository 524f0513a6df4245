/**
 * A real systemd, booted as PID 1 of new namespaces over an overlay of the root file system
 * (issue 12): everything it writes lands in a temporary upper directory under /var/tmp, it has
 * its own network namespace (no link anywhere), and it is killed with SIGKILL and unmounted at
 * the end. Commands run in it as transient units (`systemd-run --wait --pipe`), so they are
 * ordinary services of that systemd (a native build straight through nsenter failed with
 * "make: wait: No child processes").
 */
import { spawn, spawnSync } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  openSync,
  closeSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface RunResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface BootedSystem {
  /** The overlay's mount point: the booted system's / as seen from the host. */
  readonly root: string;
  /** Runs a bash script as a transient unit in the booted system. */
  run(script: string, timeoutMs?: number): RunResult;
  /** Like run, but throws with the output when the script fails. */
  sh(script: string, timeoutMs?: number): string;
  /** Kills systemd and everything in its namespaces, unmounts, removes the directory. */
  destroy(): Promise<void>;
}

/** Why the booted-systemd tests cannot run here, or undefined when they can. */
export function systemdUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (overlay mount, namespaces)';
  for (const tool of ['/lib/systemd/systemd', '/usr/bin/unshare', '/usr/bin/nsenter']) {
    if (spawnSync('test', ['-x', tool]).status !== 0) return `${tool} is missing`;
  }
  return undefined;
}

function childOf(pid: number): number | undefined {
  try {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    const first = Number(children.split(' ')[0]);
    return Number.isInteger(first) && first > 0 ? first : undefined;
  } catch {
    return undefined;
  }
}

/** Boots systemd; resolves when `systemctl is-system-running` says running or degraded. */
export async function bootSystemd(bootTimeoutMs = 150000): Promise<BootedSystem> {
  const dir = mkdtempSync('/var/tmp/tnat-systemd-');
  const root = join(dir, 'root');
  for (const sub of ['up', 'work', 'root']) mkdirSync(join(dir, sub));
  let mountedOverlay = false;
  let unsharePid: number | undefined;
  let systemdPid: number | undefined;

  const destroy = async (): Promise<void> => {
    // SIGKILL of PID 1 of a pid namespace kills every process in it.
    for (const pid of [systemdPid, unsharePid]) {
      if (pid === undefined) continue;
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (let i = 0; i < 100 && unsharePid !== undefined; i++) {
      try {
        process.kill(unsharePid, 0);
        await sleep(50);
      } catch {
        break;
      }
    }
    // The namespaces' own mounts die with them; the overlay is the host's.
    if (mountedOverlay) spawnSync('umount', ['-l', root]);
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const overlay = spawnSync(
      'mount',
      ['-t', 'overlay', 'overlay', '-o', `lowerdir=/,upperdir=${dir}/up,workdir=${dir}/work`, root],
      { encoding: 'utf8' },
    );
    if (overlay.status !== 0) throw new Error(`overlay mount failed: ${overlay.stderr}`);
    mountedOverlay = true;
    const log = openSync(join(dir, 'boot.log'), 'w');
    const unshare = spawn(
      'unshare',
      [
        '--pid',
        '--fork',
        '--mount',
        '--uts',
        '--ipc',
        '--net',
        `--mount-proc=${root}/proc`,
        'chroot',
        root,
        '/lib/systemd/systemd',
        '--system',
      ],
      { stdio: ['ignore', log, log], detached: true },
    );
    closeSync(log);
    unshare.unref();
    unsharePid = unshare.pid;
    if (unsharePid === undefined) throw new Error('unshare did not start');
    for (let i = 0; i < 100 && systemdPid === undefined; i++) {
      systemdPid = childOf(unsharePid);
      if (systemdPid === undefined) await sleep(50);
    }
    if (systemdPid === undefined) throw new Error('systemd did not start under unshare');
    const nsenter = ['-t', String(systemdPid), '-m', '-p', '-u', '-i', '-n', '-r', '-w'];

    let state = '';
    const deadline = Date.now() + bootTimeoutMs;
    while (Date.now() < deadline) {
      state = spawnSync('nsenter', [...nsenter, 'systemctl', 'is-system-running'], {
        encoding: 'utf8',
        timeout: 5000,
      }).stdout.trim();
      if (state === 'running' || state === 'degraded') break;
      await sleep(250);
    }
    if (state !== 'running' && state !== 'degraded') {
      // What the boot still waits for, to tell a slow machine from a unit that hangs.
      const jobs = spawnSync('nsenter', [...nsenter, 'systemctl', 'list-jobs', '--no-pager'], {
        encoding: 'utf8',
        timeout: 5000,
      }).stdout;
      throw new Error(
        `systemd did not boot within ${bootTimeoutMs} ms (state "${state}"); jobs: ${jobs.slice(0, 2000)}; boot log: ${readFileSync(join(dir, 'boot.log'), 'utf8').slice(-2000)}`,
      );
    }

    let scripts = 0;
    const run = (script: string, timeoutMs = 60000): RunResult => {
      // A file, not `bash -c`: systemd-run turns newlines of a command line into unit file lines.
      const name = `/var/tmp/tnat-step-${++scripts}.sh`;
      writeFileSync(join(root, name), `set -euo pipefail\n${script}\n`);
      const result = spawnSync(
        'nsenter',
        [...nsenter, 'systemd-run', '--wait', '--pipe', '--quiet', '--collect', 'bash', name],
        { encoding: 'utf8', timeout: timeoutMs },
      );
      return { status: result.status, stdout: result.stdout, stderr: result.stderr };
    };
    return {
      root,
      run,
      sh(script, timeoutMs) {
        const result = run(script, timeoutMs);
        if (result.status !== 0) {
          throw new Error(
            `step failed (status ${result.status}):\n${script}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`,
          );
        }
        return result.stdout;
      },
      destroy,
    };
  } catch (error) {
    await destroy();
    throw error;
  }
}
