/**
 * Whether a process still runs. Signal 0 checks without sending (EPERM: it exists, not ours).
 * A zombie has finished: it only waits for its parent to reap it, which for an orphan is PID 1,
 * and a PID 1 that does not reap (a container's) would keep it "alive" forever. proc(5): the
 * state is the field after the parenthesised command name in /proc/<pid>/stat.
 */
import { readFileSync } from 'node:fs';

export function isProcessAlive(pid: number, identity?: string): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z') return false;
  } catch {
    return true; // no procfs: signal 0 said it exists
  }
  // The process recorded, and not another one that got its PID since (after a reboot, say).
  return identity === undefined || processIdentity(pid) === identity;
}

/**
 * Who process `pid` is beyond its PID, which a later process may get: the boot it runs in
 * (/proc/sys/kernel/random/boot_id) and its start time in clock ticks since that boot
 * (proc(5): field 22 of /proc/<pid>/stat). Undefined without procfs or once it is gone.
 */
export function processIdentity(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The fields after the parenthesised command name start with field 3 (the state).
    const startTime = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[22 - 3];
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    return startTime === undefined || boot === '' ? undefined : `${boot}:${startTime}`;
  } catch {
    return undefined;
  }
}
