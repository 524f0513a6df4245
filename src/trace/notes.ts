/**
 * What trace and lookup say besides their answer: the status words, the notes that explain a
 * doubt, and the checks behind them (which archives were in play, whether one stayed silent).
 */
import type { Address } from '../net/address.js';
import type { ReadAssignment } from '../render/read-rules.js';
import { formatUtc } from './time.js';
import type { ActiveAround, LoadedArchive } from './timeline.js';
import type { DriftWindow } from '../archive/drift.js';

export type TraceStatus = 'found' | 'ambiguous' | 'not-found';

export type TraceNoteCode =
  | 'no-archives'
  | 'before-first-archive'
  | 'may-predate-archives'
  | 'address-not-ours'
  | 'address-needed'
  | 'port-in-no-block'
  | 'port-needed'
  | 'not-a-client'
  | 'near-switch'
  | 'clock-stepped'
  | 'several-nodes'
  | 'in-the-future'
  | 'archive-damaged'
  | 'archive-missing'
  | 'apply-interrupted'
  | 'archive-misdated'
  | 'kernel-drifted'
  | 'own-address';

/**
 * Notes that make any answer uncertain, whatever the candidates. (An interrupted apply is not
 * one: its ruleset is a candidate of its own, and where it agrees with the other, the answer
 * holds either way.)
 */
export const INTEGRITY_NOTES: ReadonlySet<TraceNoteCode> = new Set([
  'archive-damaged',
  'archive-missing',
]);

export interface TraceNote {
  readonly code: TraceNoteCode;
  readonly message: string;
}

/**
 * How far after "now" a moment may lie and still be taken as now: the reporter's clock may be
 * off by some seconds (an NTP-synchronised one is off by far less), and a report that reads
 * "just now" should still be answered. Beyond it the rulesets of that moment cannot be known:
 * any apply until then may change every block (issue 11: a future time answered FOUND).
 */
export const FUTURE_SKEW_SECONDS = 60;

/** The note for a moment later than now (plus the skew allowed), or undefined. */
export function futureNote(at: number, now: number | undefined): TraceNote | undefined {
  if (now === undefined || at <= now + FUTURE_SKEW_SECONDS) return undefined;
  return {
    code: 'in-the-future',
    message: `${formatUtc(at)} is ${String(at - now)} s after now (${formatUtc(now)}): which ruleset will be active then cannot be known yet; check the report's time and time zone (a local time given without its offset?)`,
  };
}

/** One archive's block holding the port (or, for a lookup, the client). */
export interface BlockMatch<A extends Address = Address> {
  readonly archive: LoadedArchive<A>;
  readonly assignment: ReadAssignment<A>;
}

/** Notes about time coverage shared by trace and lookup. */
export function coverageNotes(
  around: readonly ActiveAround<Address>[],
  relevant: readonly LoadedArchive<Address>[],
  at: number,
): TraceNote[] {
  const notes: TraceNote[] = around.flatMap(({ dir, missingBefore }) =>
    missingBefore === undefined ? [] : [missingBeforeNote(dir, missingBefore)],
  );
  const names = around.map((node) => node.dir).join(', ');
  if (notes.length > 0) return notes;
  if (around.every((node) => node.firstActivatedAt === undefined)) {
    // Archives dated in the future only: each may have become active at any moment, or not yet.
    if (around.some((node) => node.archives.length > 0)) {
      notes.push({
        code: 'may-predate-archives',
        message: `every archived ruleset in ${names} is dated later than now: before the first became active the port belonged to no fixed client, and when that was is not known`,
      });
    } else {
      notes.push({ code: 'no-archives', message: `there are no archived rulesets in ${names}` });
    }
    return notes;
  }
  for (const node of around) {
    if (node.firstActivatedAt === undefined || !node.mayPredateFirst) continue;
    const first = formatUtc(node.firstActivatedAt);
    if (node.archives.length === 0) {
      notes.push({
        code: 'before-first-archive',
        message: `${formatUtc(at)} is before the first archived ruleset in ${node.dir} (active since ${first}): the port then belonged to no fixed client`,
      });
    } else if (relevant.some((archive) => archive.dir === node.dir)) {
      notes.push({
        code: 'may-predate-archives',
        message: `${formatUtc(at)} is within seconds of ${first}, when the first archived ruleset in ${node.dir} became active: before it the port belonged to no fixed client`,
      });
    }
  }
  return notes;
}

/** The note for rulesets archived before the first one present (or instead of none). */
function missingBeforeNote(
  dir: string,
  { missing, first }: NonNullable<ActiveAround<Address>['missingBefore']>,
): TraceNote {
  return {
    code: 'archive-missing',
    message:
      first === undefined
        ? `${dir} holds no archive, but the state file anchors ${missing}: the archives were removed, so which ruleset was active then cannot be known (restore them from a backup; traceable-nat check)`
        : `${first} names ${missing} as the ruleset before it, which is missing from ${dir}: the rulesets active before ${first} cannot be known (restore it from a backup; traceable-nat check)`,
  };
}

/**
 * Notes for archives in play that cannot be trusted as they are, or may not have been active,
 * or may have been replaced at `at` by a ruleset whose archive is missing (`margin`: seconds of
 * doubt for the reporter's clock).
 */
export function integrityNotes(
  inPlay: readonly LoadedArchive<Address>[],
  at: number,
  margin: number,
): TraceNote[] {
  const notes: TraceNote[] = [];
  for (const archive of inPlay) {
    if (archive.damaged !== undefined) {
      notes.push({
        code: 'archive-damaged',
        message: `${archive.damaged}: its answer may be wrong (traceable-nat check lists the damage)`,
      });
    }
    const missing = archive.missingAfter;
    // The missing ruleset became active in a later second than this one, at the earliest.
    if (missing !== undefined && at + margin >= archive.entry.activatedAt + 1) {
      notes.push({
        code: 'archive-missing',
        message: `${missing}: from ${formatUtc(archive.entry.activatedAt)} on, rulesets that are not known may have been active, so no answer for that time is certain (restore it from a backup; traceable-nat check)`,
      });
    }
    if (archive.misdated === true) {
      notes.push({
        code: 'archive-misdated',
        message: `${archive.dir}/${archive.entry.name} is dated ${formatUtc(archive.entry.activatedAt)} by its name, later than now: the clock was ahead when it was archived (or the file was copied in), so its ruleset may have become active at any moment ${archive.applyStartedAt > 0 ? `since ${formatUtc(archive.applyStartedAt)}` : 'before its name'}, and its answer is given too (timedatectl; traceable-nat check)`,
      });
    }
    if (archive.pending) {
      notes.push({
        code: 'apply-interrupted',
        message: `an apply that began at ${formatUtc(archive.applyStartedAt)} was interrupted (${archive.dir}/${archive.entry.name}): its ruleset may have become active at any moment since, so its answer is given too; the next apply settles which`,
      });
    }
  }
  return notes;
}

/**
 * A note for each directory in play whose kernel did not hold the archived ruleset for a while
 * around `at` (found and repaired later): a port may have been given by another rule then.
 */
export function driftNotes(
  dirs: readonly { readonly dir: string; readonly drifts?: readonly DriftWindow[] | undefined }[],
  inPlay: readonly LoadedArchive<Address>[],
  at: number,
  margin: number,
): TraceNote[] {
  const played = new Set(inPlay.map((archive) => archive.dir));
  return dirs.flatMap(({ dir, drifts }) =>
    played.has(dir)
      ? (drifts ?? [])
          .filter((drift) => drift.from - margin <= at && at <= drift.to + margin)
          .map((drift) => ({
            code: 'kernel-drifted' as const,
            message: `the kernel did not hold ${drift.archive} (${dir}) at some moment between ${formatUtc(drift.from)} and ${formatUtc(drift.to)}, when an apply found its nat table changed (flushed, or our rules edited) and repaired it: a port may have been given by another rule then (eduVPN's MASQUERADE), so no answer for that time is certain`,
          }))
      : [],
  );
}

/** Groups by a key, keeping first-seen order (Map.groupBy needs Node 21). */
export function groupBy<T, K>(list: readonly T[], keyOf: (item: T) => K): Map<K, T[]> {
  const groups = new Map<K, T[]>();
  for (const item of list) {
    const key = keyOf(item);
    const group = groups.get(key);
    if (group) group.push(item);
    else groups.set(key, [item]);
  }
  return groups;
}

/** Notes for every directory where more than one ruleset may have been active. */
export function switchNotes(
  inPlay: readonly LoadedArchive<Address>[],
  margin: number,
): TraceNote[] {
  const notes: TraceNote[] = [];
  // An interrupted apply's ruleset, and one dated in the future, have notes of their own
  // (integrityNotes): they are no switch.
  const switched = inPlay.filter((archive) => !archive.pending && archive.misdated !== true);
  for (const [dir, archives] of groupBy(switched, (archive) => archive.dir)) {
    if (archives.length < 2) continue;
    const stepped = archives.slice(1).filter((archive) => archive.clockStep !== undefined);
    if (stepped.length > 0) {
      notes.push({
        code: 'clock-stepped',
        message: `${stepped.map((archive) => `the clock was stepped by ${String(archive.clockStep)} s before the apply of ${archive.entry.name}`).join('; ')} (its wall clock and boot clock moved apart), so the switch between the rulesets ${archives.map((archive) => archive.entry.name).join(' and ')} in ${dir} may lie that far from where the names put it: each may have been active, so each one's answer is given (timedatectl shows whether the clock is synchronised)`,
      });
      continue;
    }
    notes.push({
      code: 'near-switch',
      message: `the time is within ${margin} s of a switch between the rulesets ${archives.map((archive) => archive.entry.name).join(' and ')} in ${dir}: each may have been active, so each one's answer is given`,
    });
  }
  return notes;
}

/** Archives of the directories that matter: those with a relevant archive (all if none). */
export function archivesInPlay<A extends Address>(
  considered: readonly LoadedArchive<A>[],
  relevant: readonly LoadedArchive<A>[],
): LoadedArchive<A>[] {
  const dirs = new Set(relevant.map((archive) => archive.dir));
  return dirs.size === 0 ? [...considered] : considered.filter((archive) => dirs.has(archive.dir));
}

/**
 * Whether some ruleset that may have been active, in a directory where one gave a match,
 * gave none: then "no client at all" is as possible as the match.
 */
export function hasSilentArchive(
  inPlay: readonly LoadedArchive<Address>[],
  matches: readonly BlockMatch[],
): boolean {
  const matchedDirs = new Set(matches.map((match) => match.archive.dir));
  return inPlay.some(
    (archive) =>
      matchedDirs.has(archive.dir) && !matches.some((match) => match.archive === archive),
  );
}
