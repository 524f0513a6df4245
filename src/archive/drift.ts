/**
 * When the kernel did not hold the active ruleset (issue 13's drift: a flushed nat table, our
 * chains edited by hand), found and repaired by a later apply. Between the last moment an apply
 * knew the kernel held it and the repair, a port may have been given by another rule (eduVPN's
 * MASQUERADE): trace must not answer for that window as if the archive had been in force. The
 * windows are kept beside the archives (`.kernel-drift.log`, one `<from> <to> <archive>` line
 * each, unix seconds), so they travel with the archives a trace reads.
 */
import { closeSync, fsyncSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** Hidden, as the binding indexes are: the directory's listing stays the archives. */
export const DRIFT_LOG = '.kernel-drift.log';

export interface DriftWindow {
  /** The last moment the kernel was known to hold `archive`'s ruleset (unix seconds). */
  readonly from: number;
  /** When the drift was found and repaired. */
  readonly to: number;
  readonly archive: string;
}

/** Appends a window to the directory's log, written out before it returns. */
export function recordDrift(archiveDir: string, window: DriftWindow): void {
  const fd = openSync(join(archiveDir, DRIFT_LOG), 'a', 0o640);
  try {
    writeSync(fd, `${window.from} ${window.to} ${window.archive}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** The windows of a directory (none without a log); a line that is not one is skipped. */
export function readDrifts(archiveDir: string): DriftWindow[] {
  let text: string;
  try {
    text = readFileSync(join(archiveDir, DRIFT_LOG), 'utf8');
  } catch {
    return [];
  }
  return text.split('\n').flatMap((line) => {
    const match = /^(\d+) (\d+) (\S+)$/.exec(line);
    if (!match) return [];
    return [{ from: Number(match[1]), to: Number(match[2]), archive: match[3] ?? '' }];
  });
}
