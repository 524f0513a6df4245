/**
 * The pieces of writing a file so that a crash leaves either the old or the new content, never
 * half of it: a temporary file in the same directory and fsync here; the caller renames it into
 * place once the kernel took the rules, then fsyncs the directory. The result is always a
 * regular file: renaming over a symlink replaces the link itself, which is what we want
 * for rules.v4 (the original script left it a symlink into the archive, and a later
 * `netfilter-persistent save` would then write through it into an archived ruleset).
 */
import { closeSync, fsyncSync, openSync, unlinkSync, writeSync } from 'node:fs';
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

/** Writes `content` to a new file that nobody else can have open; returns its path. */
export function writeTemporaryBeside(target: string, content: string, mode: number): string {
  const temporary = join(
    dirname(target),
    `.${basename(target)}.${randomBytes(6).toString('hex')}.tmp`,
  );
  const fd = openSync(temporary, 'wx', mode);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    unlinkSync(temporary);
    throw error;
  }
  closeSync(fd);
  return temporary;
}
