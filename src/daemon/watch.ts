/**
 * Watches the eduVPN files and directories the configuration names, including those that do
 * not exist yet (a node gets /etc/openvpn/server only when the first profile is deployed).
 * chokidar sees a missing path appear when its parent directory exists; for a path further
 * away, the nearest existing ancestor is watched (not recursively) until the path can be.
 * Editors write via rename and vpn-maint-apply-changes deletes and rewrites many files: every
 * kind of event counts as "something changed", the settle timer makes one apply of the burst.
 */
import { existsSync } from 'node:fs';
import { dirname, resolve, sep } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';

export interface SourceWatcher {
  close(): Promise<void>;
}

function nearestWatchable(target: string): string {
  let path = target;
  while (!existsSync(dirname(path)) && dirname(path) !== path) path = dirname(path);
  return path;
}

function isWithin(path: string, target: string): boolean {
  return path === target || path.startsWith(target + sep);
}

export function watchSources(
  paths: readonly string[],
  onChange: (path: string) => void,
  onError: (error: unknown) => void,
): SourceWatcher {
  const targets = [...new Set(paths.map((path) => resolve(path)))];
  const watching = new Set(targets.map(nearestWatchable));
  const watcher: FSWatcher = watch([...watching], {
    ignoreInitial: true,
    // Direct children only: the OpenVPN and profiles directories are flat.
    depth: 0,
  });
  watcher.on('all', (_event, path) => {
    const absolute = resolve(path);
    const target = targets.find((candidate) => isWithin(absolute, candidate));
    if (target !== undefined) {
      onChange(absolute);
      return;
    }
    // A directory on the way to a missing target appeared: watch one step closer.
    for (const missing of targets) {
      if (!isWithin(missing, absolute)) continue;
      const closer = nearestWatchable(missing);
      if (!watching.has(closer)) {
        watching.add(closer);
        watcher.add(closer);
      }
    }
  });
  watcher.on('error', onError);
  return { close: () => watcher.close() };
}
