/**
 * Which directories to watch for the eduVPN paths, and which of their events matter. Pure: the
 * file system is asked through `probe`.
 *
 * A watch on a file follows its inode, and editors, configuration tools and
 * vpn-maint-apply-changes replace a file by renaming a new one over it: the old inode's watch
 * then hears nothing more (inotify(7): IN_DELETE_SELF, then IN_IGNORED). A watch on the
 * directory hears every entry that is created, renamed over, changed or removed. So each path
 * is watched through its parent directory, and a path that is a directory (the OpenVPN and
 * profiles directories) through itself as well, for its entries. A parent that is missing is
 * replaced by its nearest existing ancestor, until the directories on the way appear.
 */
import { basename, dirname, join, sep } from 'node:path';

export type Probe = (
  path: string,
) => { readonly kind: 'directory'; readonly identity: string } | { readonly kind: 'missing' };

/** Directory to watch -> the identity (device, inode, birth time) it had when planned. */
export type WatchPlan = ReadonlyMap<string, string>;

function nearestDirectory(path: string, probe: Probe): [string, string] | undefined {
  for (let dir = path; ; dir = dirname(dir)) {
    const found = probe(dir);
    if (found.kind === 'directory') return [dir, found.identity];
    if (dirname(dir) === dir) return undefined;
  }
}

export function planWatches(targets: readonly string[], probe: Probe): WatchPlan {
  const plan = new Map<string, string>();
  for (const target of targets) {
    const parent = nearestDirectory(dirname(target), probe);
    if (parent) plan.set(...parent);
    const self = probe(target);
    if (self.kind === 'directory') plan.set(target, self.identity);
  }
  return plan;
}

function isWithin(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

/**
 * Whether the entry `name` of the watched directory `dir` changing can change a target or
 * where to watch: an entry of a target directory, a target, a directory on the way to one, or
 * `dir` itself (inotify reports a watched directory's own deletion or move under its name).
 */
export function isRelevant(dir: string, name: string | null, targets: readonly string[]): boolean {
  if (name === null || name === basename(dir) || targets.includes(dir)) return true;
  const entry = join(dir, name);
  return targets.some((target) => isWithin(target, entry));
}
