/**
 * The daemon's audit events in the journal as a second anchor for the archive chain: every
 * "ruleset applied" event names the archive it activated and its SHA-256, and journald keeps
 * them outside the archive directory and outside firewall.stateFile. `check` reads the recent
 * ones (`journalctl -u traceable-nat -o cat`) and compares: an archive the journal vouches for
 * must still be there with that hash, even when someone made the state file agree with an
 * edited directory. Where there is no journal (no systemd, the CLI only), there is nothing to
 * compare, and that is said, not failed.
 */
import { execFileSync } from 'node:child_process';
import { basename, dirname, resolve } from 'node:path';
import { archiveDigest, listArchives } from './store.js';

export interface AuditedArchive {
  readonly archive: string;
  readonly sha256: string;
}

/** How many recent audit events are compared (a day of busy profile edits, at most). */
const RECENT_EVENTS = 500;

/** The archives the journal's recent audit events name; undefined when there is no journal. */
export function readAuditedArchives(unit = 'traceable-nat'): AuditedArchive[] | undefined {
  let text: string;
  try {
    text = execFileSync(
      'journalctl',
      ['-u', unit, '-o', 'cat', '--no-pager', '-q', '-n', String(RECENT_EVENTS * 4)],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10000 },
    );
  } catch {
    return undefined; // no journalctl, no journal, or no access to it
  }
  const audited: AuditedArchive[] = [];
  for (const line of text.split('\n')) {
    if (!line.includes('"ruleset applied"')) continue;
    try {
      const event = JSON.parse(line.slice(line.indexOf('{'))) as Record<string, unknown>;
      if (typeof event.archive === 'string' && typeof event.sha256 === 'string') {
        audited.push({ archive: event.archive, sha256: event.sha256 });
      }
    } catch {
      // not one of our JSON lines
    }
  }
  return audited.slice(-RECENT_EVENTS);
}

/** The journal's archives of `dir` that are gone or changed since their audit event. */
export function auditProblems(dir: string, audited: readonly AuditedArchive[]): string[] {
  const here = new Map(listArchives(dir).map((entry) => [entry.name, entry]));
  const problems: string[] = [];
  for (const { archive, sha256: recorded } of audited) {
    if (resolve(dirname(archive)) !== resolve(dir)) continue;
    const entry = here.get(basename(archive));
    if (entry === undefined) {
      problems.push(
        `the journal's audit event for ${basename(archive)} names an archive that is no longer there`,
      );
      continue;
    }
    const actual = archiveDigest(dir, entry);
    if (actual !== recorded) {
      problems.push(
        `${basename(archive)} was changed after the journal's audit event recorded it (sha256 ${actual}, audited ${recorded})`,
      );
    }
  }
  return problems;
}
