/**
 * The archive directory on disk. Every ruleset that becomes active is written once, read-only,
 * and never modified or deleted by us. Writing happens in two steps around the kernel apply:
 * `prepare` writes the complete file under a temporary name first (so a full disk or a read-only
 * directory fails before anything changes), and `commit` links it to its final name once the
 * rules are active. link() refuses to replace an existing file, so an archive is never clobbered.
 */
import { chmodSync, linkSync, mkdirSync, readdirSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { TnatError } from '../errors.js';
import { fsyncDirectory, writeTemporaryBeside } from '../system/atomic-write.js';
import { renderArchive, sha256, type ArchiveHeader, type Backend } from './header.js';
import { archiveName, sortArchiveNames, type ArchiveName } from './names.js';

export interface StoredArchive {
  readonly entry: ArchiveName;
  readonly path: string;
  readonly text: string;
}

export interface PendingArchive {
  /** Gives the archive its final name; returns its path and SHA-256. */
  commit(activatedAt: number): { path: string; sha256: string };
  discard(): void;
}

function archiveError(dir: string, action: string, error: unknown): TnatError {
  const code = (error as NodeJS.ErrnoException).code ?? 'error';
  return new TnatError(
    action === 'read' ? 'E_ARCHIVE' : 'E_WRITE',
    `the archive directory ${dir} cannot be ${action} (${code}): make it writable for root or change firewall.archiveDir; nothing was applied`,
    { cause: error },
  );
}

export function listArchives(dir: string): ArchiveName[] {
  try {
    return sortArchiveNames(readdirSync(dir));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw archiveError(dir, 'read', error);
  }
}

export function readArchive(dir: string, entry: ArchiveName): StoredArchive {
  const path = join(dir, entry.name);
  try {
    return { entry, path, text: readFileSync(path, 'utf8') };
  } catch (error) {
    throw new TnatError('E_ARCHIVE', `${path} cannot be read: check its permissions`, {
      cause: error,
    });
  }
}

export function newestArchive(dir: string, backend?: Backend): StoredArchive | undefined {
  const entries = listArchives(dir).filter(
    (entry) => backend === undefined || entry.backend === backend,
  );
  const newest = entries.at(-1);
  return newest ? readArchive(dir, newest) : undefined;
}

/**
 * Writes the archive under a temporary name. `previous` is the newest archive in the directory
 * (of either backend): the hash chain links every file to the one before it.
 */
export function prepareArchive(
  dir: string,
  header: Omit<ArchiveHeader, 'previous'>,
  body: string,
  previous: StoredArchive | undefined,
): PendingArchive {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o750 });
  } catch (error) {
    throw archiveError(dir, 'created', error);
  }
  const content = renderArchive(
    {
      ...header,
      previous: previous ? { name: previous.entry.name, sha256: sha256(previous.text) } : undefined,
    },
    body,
  );
  let temporary: string;
  try {
    temporary = writeTemporaryBeside(join(dir, archiveName(header.backend, 0)), content, 0o440);
  } catch (error) {
    throw archiveError(dir, 'written', error);
  }
  const pending: PendingArchive = {
    commit(activatedAt) {
      const path = join(dir, archiveName(header.backend, activatedAt));
      linkSync(temporary, path);
      unlinkSync(temporary);
      chmodSync(path, 0o440);
      fsyncDirectory(dir);
      return { path, sha256: sha256(content) };
    },
    discard() {
      try {
        unlinkSync(temporary);
      } catch {
        // already gone
      }
    },
  };
  return pending;
}
