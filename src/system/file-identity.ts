/**
 * A file's identity, as git trusts its index: while a file still has the identity it had when
 * this process last wrote or read it, its bytes are the ones it knows, and need not be read.
 */
import { lstatSync } from 'node:fs';

/**
 * What changes whenever a file's bytes do: its inode (a new file renamed into place), size,
 * and modification and status change times in nanoseconds (any write, even one that restores
 * the modification time, moves the status change time). A write within the same clock tick as
 * the rename that made the file ours would go unseen until the daemon's periodic check, which
 * reads the file whole.
 */
export interface FileIdentity {
  readonly dev: bigint;
  readonly ino: bigint;
  readonly size: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
}

/** The identity of the regular file at `path` (not followed if a symlink); undefined if none. */
export function identityOf(path: string): FileIdentity | undefined {
  try {
    const stat = lstatSync(path, { bigint: true });
    if (!stat.isFile()) return undefined;
    const { dev, ino, size, mtimeNs, ctimeNs } = stat;
    return { dev, ino, size, mtimeNs, ctimeNs };
  } catch {
    return undefined;
  }
}

const IDENTITY_KEYS = ['dev', 'ino', 'size', 'mtimeNs', 'ctimeNs'] as const;

/** Both known and equal. */
export function sameIdentity(a: FileIdentity | undefined, b: FileIdentity | undefined): boolean {
  return a !== undefined && b !== undefined && IDENTITY_KEYS.every((key) => a[key] === b[key]);
}
