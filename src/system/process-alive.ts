/**
 * Whether a process still runs. Signal 0 checks without sending (EPERM: it exists, not ours).
 * A zombie has finished: it only waits for its parent to reap it, which for an orphan is PID 1,
 * and a PID 1 that does not reap (a container's) would keep it "alive" forever. proc(5): the
 * state is the field after the parenthesised command name in /proc/<pid>/stat.
 */
import { readFileSync } from 'node:fs';

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true; // no procfs: signal 0 said it exists
  }
}
