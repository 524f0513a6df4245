/**
 * Killing the applier mid-transaction: a wrapper first on PATH slows down the real kernel load
 * (never its check), and the CLI is killed with SIGKILL once the load has begun.
 */
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { sh } from '../helpers/netns.js';
import { readText, type FaultSite } from './site.js';

/**
 * A wrapper that delays the real load (never the --test / -c check) by `delay` seconds, after
 * it has read all of its input.
 */
export function writeSlowWrapper(
  dir: string,
  backend: 'iptables' | 'nftables',
  delay: number,
  name = backend === 'iptables' ? 'iptables-restore' : 'nft',
  /** false: say "loading" at once, so the applier can be killed while it still writes stdin. */
  readInputFirst = true,
): void {
  mkdirSync(dir, { recursive: true });
  const real = sh(['sh', '-c', `command -v ${name}`]).trim();
  const check = name === 'nft' ? '-c' : '--test';
  const loads = name !== 'nft' ? 'true' : `case " $* " in *" -f "*) true;; *) false;; esac`;
  writeFileSync(
    join(dir, name),
    [
      '#!/bin/sh',
      `case " $* " in *" ${check} "*) exec ${real} "$@";; esac`,
      // The whole payload is read before the mark says "loading": a kill of the applier right
      // after the mark can then never cut the payload short (stdin written in part, or not yet).
      readInputFirst
        ? `if ${loads}; then cat > "$SLOW_MARK.input"; echo $$ > "$SLOW_MARK"; sleep ${delay}; exec ${real} "$@" < "$SLOW_MARK.input"; fi`
        : `if ${loads}; then echo $$ > "$SLOW_MARK"; sleep ${delay}; fi`,
      `exec ${real} "$@"`,
      '',
    ].join('\n'),
  );
  chmodSync(join(dir, name), 0o755);
}

export async function waitFor(what: string, done: () => boolean, ms = 15000): Promise<void> {
  const until = Date.now() + ms;
  while (!done()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

export interface Killed {
  /** The pid of the slowed kernel command, still running. */
  readonly childPid: number;
}

/**
 * Starts `apply` in the site's namespace with `env`, and kills it with SIGKILL once `moment`
 * resolves. `ip netns exec` and `env` exec() into node: the pid killed is the applier itself
 * (one that has ended ignores the kill).
 */
export async function applyKilledWhen(
  site: FaultSite,
  env: readonly string[],
  moment: () => Promise<void>,
): Promise<void> {
  const child = spawn(
    'ip',
    [
      'netns',
      'exec',
      site.net.gateway,
      'env',
      ...env,
      join('bin', 'traceable-nat'),
      'apply',
      '--config',
      site.sandbox.configFile,
    ],
    { stdio: 'ignore' },
  );
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await moment();
  child.kill('SIGKILL');
  await exited;
}

/** Starts `apply` with the slow wrapper and kills it with SIGKILL once the load has begun. */
export async function applyAndKill(site: FaultSite, wrapperDir: string): Promise<Killed> {
  const mark = join(site.sandbox.dir, `slow-${Date.now()}`);
  await applyKilledWhen(
    site,
    [`PATH=${wrapperDir}:${process.env.PATH ?? ''}`, `SLOW_MARK=${mark}`],
    () =>
      waitFor('the slowed load to start', () => existsSync(mark) && readText(mark).trim() !== ''),
  );
  return { childPid: Number(readFileSync(mark, 'utf8').trim()) };
}
