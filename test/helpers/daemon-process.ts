/** The real daemon (bin/traceable-nat daemon) started inside a network namespace. */
import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';

/**
 * `ip netns exec` execs the program, so the child's pid is the daemon's and signals reach it.
 * `env` is added to this process's environment.
 */
export function spawnDaemon(
  ns: string,
  configFile: string,
  env: Readonly<Record<string, string>>,
): ChildProcess {
  return spawn(
    'ip',
    ['netns', 'exec', ns, resolve('bin/traceable-nat'), 'daemon', '--config', configFile],
    { env: { ...process.env, ...env } },
  );
}
