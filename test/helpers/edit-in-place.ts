/** A file's bytes edited while its identity is kept as far as a user can: the helpers to try. */
import { spawnSync } from 'node:child_process';
import { statSync, writeFileSync } from 'node:fs';

/**
 * Writes `text` over `path` in place and puts its modification time back to `mtimeNs`, to the
 * nanosecond (`touch -d @S.N`): only the status change time witnesses the write. Returns the
 * modification time the file has afterwards (the caller checks it is `mtimeNs`).
 */
export function writeKeepingMtime(path: string, text: string, mtimeNs: bigint): bigint {
  writeFileSync(path, text);
  const seconds = `${mtimeNs / 1_000_000_000n}.${(mtimeNs % 1_000_000_000n).toString().padStart(9, '0')}`;
  const touched = spawnSync('touch', ['-m', '-d', `@${seconds}`, path]);
  if (touched.status !== 0) throw new Error(`touch failed: ${touched.stderr.toString()}`);
  return statSync(path, { bigint: true }).mtimeNs;
}
