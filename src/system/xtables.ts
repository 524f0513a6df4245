/**
 * Which names are iptables target extensions on this machine: the modules iptables loads
 * (`libxt_<NAME>.so`, and `libipt_`/`libip6t_` for one family), so that a jump can be told
 * from a target (src/render/jump-targets.ts).
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { TargetKnown } from '../render/jump-targets.js';

/**
 * The directories iptables loads its extensions from: XTABLES_LIBDIR as iptables reads it, else
 * where Debian (/usr/lib/<triplet>/xtables) and a plain build (/usr/lib/xtables) put them.
 */
export function xtablesDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const fromEnv = env.XTABLES_LIBDIR?.split(':').filter((dir) => dir !== '');
  if (fromEnv && fromEnv.length > 0) return fromEnv;
  const candidates = ['/usr/lib/xtables', '/usr/local/lib/xtables'];
  for (const lib of ['/usr/lib', '/lib']) {
    try {
      for (const entry of readdirSync(lib)) candidates.push(join(lib, entry, 'xtables'));
    } catch {
      // No such directory on this system.
    }
  }
  return candidates.filter((dir) => existsSync(join(dir, 'libxt_standard.so')));
}

/**
 * Whether a target extension exists in `dirs`; undefined when no extension directory is found
 * (then no target can be judged, and none is reported).
 */
export function targetKnownIn(dirs: readonly string[], family: 4 | 6): TargetKnown | undefined {
  if (dirs.length === 0) return undefined;
  const prefixes = ['libxt_', family === 4 ? 'libipt_' : 'libip6t_'];
  return (target) =>
    dirs.some((dir) => prefixes.some((prefix) => existsSync(join(dir, `${prefix}${target}.so`))));
}
