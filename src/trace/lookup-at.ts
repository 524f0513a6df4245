/**
 * The reverse of a trace: which public address and port block a client address had at a
 * moment, from the archived rulesets of that moment, with the same honesty about switches.
 */
import { formatIpv4 } from '../net/ipv4.js';
import {
  activeAround,
  SWITCH_MARGIN_SECONDS,
  type ArchiveDir,
  type LoadedArchive,
} from './timeline.js';
import {
  archivesInPlay,
  coverageNotes,
  futureNote,
  hasSilentArchive,
  integrityNotes,
  INTEGRITY_NOTES,
  switchNotes,
  type BlockMatch,
  type TraceNote,
  type TraceStatus,
} from './notes.js';

export interface LookupAtResult {
  readonly status: TraceStatus;
  readonly notes: readonly TraceNote[];
  readonly archives: readonly LoadedArchive[];
  /** The client's blocks in every archive that may have been active, oldest first. */
  readonly matches: readonly BlockMatch[];
}

function blockKey(match: BlockMatch): string {
  const { publicAddress, firstPort, lastPort, proto } = match.assignment;
  return `${match.archive.dir}|${publicAddress}|${firstPort}|${lastPort}|${proto}`;
}

export function lookupClientAt(
  dirs: readonly ArchiveDir[],
  client: number,
  at: number,
  margin = SWITCH_MARGIN_SECONDS,
  /** Unix seconds of now; a later moment (beyond a small clock skew) is not answered. */
  now?: number,
): LookupAtResult {
  const future = futureNote(at, now);
  if (future) return { status: 'not-found', notes: [future], archives: [], matches: [] };
  const around = dirs.map((dir) => activeAround(dir, at, margin));
  const considered = around.flatMap((node) => node.archives);
  const matches = considered.flatMap((archive) =>
    archive.assignments
      .filter((assignment) => assignment.client === client)
      .map((assignment) => ({ archive, assignment })),
  );
  const relevant = [...new Set(matches.map((match) => match.archive))];
  const inPlay = archivesInPlay(considered, relevant);
  const notes = [
    ...coverageNotes(around, relevant, at),
    ...(relevant.length > 0 ? switchNotes(inPlay, margin) : []),
    ...integrityNotes(inPlay),
  ];
  if (considered.length > 0 && matches.length === 0) {
    notes.push({
      code: 'not-a-client',
      message: `${formatIpv4(client)} has no block in ${considered.map((archive) => archive.entry.name).join(' or ')}: it was not a client address then`,
    });
  }
  const dirsWithClient = new Set(matches.map((match) => match.archive.dir));
  if (dirsWithClient.size > 1) {
    notes.push({
      code: 'several-nodes',
      message: `${formatIpv4(client)} has a block on more than one node (${[...dirsWithClient].join(', ')})`,
    });
  }
  const distinct = new Set(matches.map(blockKey)).size;
  const status: TraceStatus =
    matches.length === 0
      ? 'not-found'
      : distinct > 1 ||
          hasSilentArchive(inPlay, matches) ||
          notes.some(
            (note) => note.code === 'may-predate-archives' || INTEGRITY_NOTES.has(note.code),
          )
        ? 'ambiguous'
        : 'found';
  return { status, notes, archives: inPlay, matches };
}
