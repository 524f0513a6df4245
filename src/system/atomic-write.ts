/**
 * The pieces of writing a file so that a crash leaves either the old or the new content, never
 * half of it: a temporary file in the same directory, written in full and fsynced here; the
 * caller renames it into place once the kernel took the rules, then fsyncs the directory. The
 * result is always a regular file: renaming over a symlink replaces the link itself, which is
 * what we want for rules.v4 (the original script left it a symlink into the archive, and a
 * later `netfilter-persistent save` would then write through it into an archived ruleset).
 *
 * write(2) may write less than it was given (a nearly full file system, a signal): one
 * writeSync is not a complete write. We loop until every byte is written, fsync, and then
 * check with fstat that the file holds exactly the bytes we meant, before anyone renames it.
 */
import {
  closeSync,
  fstatSync,
  fsyncSync,
  openSync,
  readdirSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';

export function fsyncDirectory(directory: string): void {
  const fd = openSync(directory, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes all of `bytes` to `fd`, however many write(2) calls that takes. */
export function writeFully(fd: number, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) {
    const written = writeSync(fd, bytes, offset, bytes.length - offset);
    // A zero-byte write that is no error would loop forever; the file system is full.
    if (written <= 0) {
      throw Object.assign(new Error(`write returned ${written} after ${offset} bytes`), {
        code: 'ENOSPC',
      });
    }
    offset += written;
  }
}

const TEMPORARY_SUFFIX = '.tmp';

function temporaryPrefix(target: string): string {
  return `.${basename(target)}.`;
}

/** Writes `content` to a new file that nobody else can have open; returns its path. */
export function writeTemporaryBeside(
  target: string,
  content: string | Uint8Array,
  mode: number,
): string {
  const temporary = join(
    dirname(target),
    `${temporaryPrefix(target)}${randomBytes(6).toString('hex')}${TEMPORARY_SUFFIX}`,
  );
  const bytes = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
  const fd = openSync(temporary, 'wx', mode);
  try {
    writeFully(fd, bytes);
    fsyncSync(fd);
    const { size } = fstatSync(fd);
    if (size !== bytes.length) {
      throw Object.assign(new Error(`${temporary} holds ${size} of ${bytes.length} bytes`), {
        code: 'EIO',
      });
    }
  } catch (error) {
    closeSync(fd);
    unlinkSync(temporary);
    throw error;
  }
  closeSync(fd);
  return temporary;
}

/**
 * Removes temporary files that a killed applier left beside `target` (only the lock holder
 * writes them, so under the lock every one of them is stale). Returns how many were removed.
 */
export function removeStaleTemporaries(target: string): number {
  const prefix = temporaryPrefix(target);
  return removeTemporariesIn(dirname(target), (name) => name.startsWith(prefix));
}

/**
 * Removes the temporary files in `directory` of every target whose name `isTarget` accepts:
 * for files named per archive (binding indexes), where no one target name covers them.
 */
export function removeStaleTemporariesOf(
  directory: string,
  isTarget: (name: string) => boolean,
): number {
  return removeTemporariesIn(directory, (name) => {
    // `.<target>.<12 hex digits>.tmp`, as writeTemporaryBeside names them.
    const match = /^\.(.+)\.[0-9a-f]{12}\.tmp$/.exec(name);
    return match?.[1] !== undefined && isTarget(match[1]);
  });
}

function removeTemporariesIn(directory: string, isOurs: (name: string) => boolean): number {
  let names: string[];
  try {
    names = readdirSync(directory);
  } catch {
    return 0; // no directory yet: nothing left behind
  }
  let removed = 0;
  for (const name of names) {
    if (!name.endsWith(TEMPORARY_SUFFIX) || !isOurs(name)) continue;
    try {
      unlinkSync(join(directory, name));
      removed++;
    } catch {
      // gone already, or not ours to remove (read-only): harmless either way
    }
  }
  return removed;
}
