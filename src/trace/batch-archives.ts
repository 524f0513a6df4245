/**
 * The parsed archives a batch of traces shares. Parsing is what a trace costs (a /16 archive is
 * 14.5 MB of text), so every archive is parsed once and kept while it may still be needed. The
 * batch answers its rows in time order, so the archives a row needs are those of the row before
 * it or later ones: a least-recently-used set of a few per directory is enough, and memory stays
 * bounded however long the batch is.
 */
import { loadArchive, type ArchiveDir, type LoadedArchive } from './timeline.js';

/**
 * Archives kept per directory: the one active at a moment, the one after it (read to learn
 * whether its apply had begun), and one more for a switch window holding two switches.
 */
export const ARCHIVES_KEPT_PER_DIR = 3;

/** The same directories, parsing through one shared cache of `capacity` archives. */
export function withArchiveCache(
  dirs: readonly ArchiveDir[],
  capacity = ARCHIVES_KEPT_PER_DIR * dirs.length,
): ArchiveDir[] {
  // Map keeps insertion order: re-inserting on every use makes the first key the least recent.
  const kept = new Map<string, LoadedArchive | undefined>();
  return dirs.map((dir) => ({
    // Everything that vouches for the archives (digest, anchor, pending) stays as it was.
    ...dir,
    load: (index: number) => {
      const key = `${dir.dir}\0${dir.entries[index]?.name ?? String(index)}`;
      const archive = kept.has(key) ? kept.get(key) : loadArchive(dir, index);
      kept.delete(key);
      kept.set(key, archive);
      for (const oldest of kept.keys()) {
        if (kept.size <= capacity) break;
        kept.delete(oldest);
      }
      return archive;
    },
  }));
}
