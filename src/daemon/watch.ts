/**
 * Watches the eduVPN files and directories the configuration names, including those that do
 * not exist yet (a node gets /etc/openvpn/server only when the first profile is deployed), and
 * keeps watching when they, or the directories above them, are deleted and created again. What
 * is watched is planned in watch-plan.ts: directories only, never a file's inode.
 *
 * Every event that matters is reported, none is merged or dropped: the settle timer turns a
 * burst into one apply, and that apply reads the files when the burst is over. This is why
 * node:fs.watch (inotify on Linux) is used directly and not chokidar: chokidar 5 drops a
 * `change` that follows another within 50 ms and a file event within 5 ms of the previous one
 * (`_throttle` in index.js and handler.js), so of fifty renames over config.php it reported
 * only the first; and a watched directory that is deleted and created again is never watched
 * again (there is no watch left to tell it).
 */
import { statSync, watch, type FSWatcher } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { isRelevant, planWatches, type Probe } from './watch-plan.js';

export interface SourceWatcher {
  close(): Promise<void>;
}

/** Planning again until the plan holds: each round can only follow a directory that appeared. */
const MAX_ROUNDS = 16;

function isGone(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

const probe: Probe = (path) => {
  let stats;
  try {
    // A reused inode number is told apart by its birth time (statx(2), where the file system has it).
    stats = statSync(path, { bigint: true, throwIfNoEntry: false });
  } catch (error) {
    // A file on the way (ENOTDIR) or a symbolic link that loops (ELOOP): no directory now, so its
    // nearest ancestor is watched for the repair. throwIfNoEntry spares only ENOENT, and a throw
    // here ended the daemon from inside the watch's callback.
    if (isGone(error) || (error as NodeJS.ErrnoException).code === 'ELOOP')
      return { kind: 'missing' };
    throw error;
  }
  return stats?.isDirectory()
    ? { kind: 'directory', identity: `${stats.dev}:${stats.ino}:${stats.birthtimeNs}` }
    : { kind: 'missing' };
};

export function watchSources(
  paths: readonly string[],
  onChange: (path: string) => void,
  onError: (error: unknown) => void,
): SourceWatcher {
  const targets = [...new Set(paths.map((path) => resolve(path)))];
  const watches = new Map<string, { readonly identity: string; readonly watcher: FSWatcher }>();
  let closed = false;

  const drop = (dir: string) => {
    watches.get(dir)?.watcher.close();
    watches.delete(dir);
  };

  /** A watch on `dir`; undefined if it cannot be had now (the error, unless it is just gone). */
  const open = (dir: string): FSWatcher | Error | undefined => {
    try {
      const watcher = watch(dir, { persistent: true }, (_event, name) => {
        heard(dir, name);
      });
      watcher.on('error', (error) => {
        if (closed) return;
        drop(dir);
        onError(error);
        follow();
      });
      return watcher;
    } catch (error) {
      // Gone between the plan and the watch: the next round plans its ancestor.
      if (isGone(error)) return undefined;
      // ENOSPC is the inotify watch limit (fs.inotify.max_user_watches): worth a warning.
      return error instanceof Error ? error : new Error(String(error));
    }
  };

  /** Makes the watches match the file system. */
  const follow = (): void => {
    let failure: Error | undefined;
    for (let round = 0; round < MAX_ROUNDS; round++) {
      let plan;
      try {
        plan = planWatches(targets, probe);
      } catch (error) {
        // Any other stat(2) failure (EACCES, EIO): said, not thrown out of a watch's callback.
        failure ??= error instanceof Error ? error : new Error(String(error));
        break;
      }
      let held = true;
      for (const [dir, watched] of watches) {
        if (plan.get(dir) === watched.identity) continue;
        drop(dir);
        held = false;
      }
      for (const [dir, identity] of plan) {
        if (watches.has(dir)) continue;
        held = false;
        const watcher = open(dir);
        if (watcher instanceof Error) failure ??= watcher;
        else if (watcher) watches.set(dir, { identity, watcher });
      }
      if (held || failure) break;
    }
    // Unwatched for now; the daemon's periodic check still reads the files.
    if (failure) onError(failure);
  };

  const heard = (dir: string, name: string | null) => {
    if (closed) return;
    // Its own deletion or move: inotify has removed the watch (IN_IGNORED), even if a directory
    // of the same name (and perhaps a reused inode) is already there again.
    if (name === null || name === basename(dir)) drop(dir);
    if (!isRelevant(dir, name, targets)) return;
    follow();
    // Reported after the watches are in place again, so nothing after this goes unheard; and
    // reported even if only the watches moved, since the files may have changed meanwhile.
    onChange(name === null ? dir : join(dir, name));
  };

  follow();
  return {
    close() {
      closed = true;
      for (const dir of [...watches.keys()]) drop(dir);
      return Promise.resolve();
    },
  };
}
