/**
 * The binding index on disk: `.<archive name>.idx` beside the archive (hidden, outside the
 * archive names, so the hash chain, `check`, `ls` and the seed's `zgrep rules.v4.*.gz` never
 * see it). The archive stays the evidence: it is read and hashed on every use, and its index
 * is used only when it names exactly those bytes (readArchiveForTrace in store.ts). Writing an
 * index is best effort: a directory that is read-only or full just leaves traces slower.
 */
import { renameSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { removeStaleTemporariesOf, writeTemporaryBeside } from '../system/atomic-write.js';
import { bindingIndexName, encodeBindingIndex, type ArchiveBindings } from './binding-index.js';

/**
 * Removes index temporaries that a killed writer left (an apply killed while it wrote the new
 * archive's index). Called under the apply's lock; a trace, which holds no lock, may be writing
 * one right then: its index is then not written, which only leaves that trace's next run slower.
 */
export function removeStaleIndexTemporaries(dir: string): number {
  return removeStaleTemporariesOf(dir, (target) => /^\..+\.idx$/.test(target));
}

/**
 * Writes (or replaces) the index of archive `name`, whose stored bytes have SHA-256
 * `archiveSha256`; returns whether it was written. Never fails the caller.
 */
export function writeBindingIndex(
  dir: string,
  name: string,
  archiveSha256: string,
  bindings: ArchiveBindings,
): boolean {
  const bytes = encodeBindingIndex(name, archiveSha256, bindings);
  if (!bytes) return false;
  const target = join(dir, bindingIndexName(name));
  let temporary: string | undefined;
  try {
    temporary = writeTemporaryBeside(target, bytes, 0o440);
    renameSync(temporary, target);
    return true;
  } catch {
    if (temporary !== undefined) {
      try {
        unlinkSync(temporary);
      } catch {
        // gone already
      }
    }
    return false;
  }
}
