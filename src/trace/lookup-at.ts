/**
 * The reverse of a trace: which public address and port block a client address had at a
 * moment, from the archived rulesets of that moment, with the same honesty about switches.
 */
import { formatAddress, type Address } from '../net/address.js';
import { blocksOfClient6, ipv6Of } from './archive6.js';
import {
  activeAround,
  SWITCH_MARGIN_SECONDS,
  type ActiveAround,
  type ArchiveDir,
  type LoadedArchive,
} from './timeline.js';
import type { ReadAssignment } from '../render/read-rules.js';
import {
  archivesInPlay,
  coverageNotes,
  futureNote,
  hasSilentArchive,
  driftNotes,
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
  readonly archives: readonly LoadedArchive<Address>[];
  /** The client's blocks in every archive that may have been active, oldest first. */
  readonly matches: readonly BlockMatch[];
}

function blockKey(match: BlockMatch): string {
  const { publicAddress, firstPort, lastPort, proto } = match.assignment;
  return `${match.archive.dir}|${publicAddress}|${firstPort}|${lastPort}|${proto}`;
}

/** A client (IPv4 number or IPv6 bigint) in the rulesets of its family around `at`. */
export function lookupClientAt(
  dirs: readonly ArchiveDir[],
  client: Address,
  at: number,
  margin = SWITCH_MARGIN_SECONDS,
  /** Unix seconds of now; a later moment (beyond a small clock skew) is not answered. */
  now?: number,
): LookupAtResult {
  const future = futureNote(at, now);
  if (future) return { status: 'not-found', notes: [future], archives: [], matches: [] };
  const around = dirs.map((dir) => activeAround(dir, at, margin));
  if (typeof client === 'bigint') {
    const around6 = around.map((node) => ({ ...node, archives: node.archives.map(ipv6Of) }));
    return lookupAround(around6, client, at, margin, (archive) => blocksOfClient6(archive, client));
  }
  return lookupAround(around, client, at, margin, (archive) =>
    archive.assignments().filter((assignment) => assignment.client === client),
  );
}

function lookupAround<A extends Address>(
  around: readonly ActiveAround<A>[],
  client: A,
  at: number,
  margin: number,
  blocksOf: (archive: LoadedArchive<A>) => readonly ReadAssignment<A>[],
): LookupAtResult {
  const considered = around.flatMap((node) => node.archives);
  const matches: BlockMatch[] = considered.flatMap((archive) =>
    blocksOf(archive).map((assignment) => ({ archive, assignment })),
  );
  const relevant = [...new Set(matches.map((match) => match.archive))];
  const inPlay = archivesInPlay(considered, relevant);
  const notes = [
    ...coverageNotes(around, relevant, at),
    ...(relevant.length > 0 ? switchNotes(inPlay, margin) : []),
    ...integrityNotes(inPlay, at, margin),
    ...driftNotes(around, inPlay, at, margin),
  ];
  const readable = considered.filter((archive) => archive.ipv6State !== 'unreadable');
  if (readable.length > 0 && matches.length === 0) {
    const untranslated = readable.filter((archive) => archive.ipv6State === 'not-ours');
    const why =
      untranslated.length === readable.length
        ? "they held no IPv6 rules of ours (eduVPN's own masquerade translated IPv6 clients then, untraceably)"
        : 'it was not a client address then';
    notes.push({
      code: 'not-a-client',
      message: `${formatAddress(client)} has no block in ${readable.map((archive) => archive.entry.name).join(' or ')}: ${why}`,
    });
  }
  const dirsWithClient = new Set(matches.map((match) => match.archive.dir));
  if (dirsWithClient.size > 1) {
    notes.push({
      code: 'several-nodes',
      message: `${formatAddress(client)} has a block on more than one node (${[...dirsWithClient].join(', ')})`,
    });
  }
  const distinct = new Set(matches.map(blockKey)).size;
  const unreadable = inPlay.some((archive) => archive.ipv6State === 'unreadable');
  // A damaged or missing archive may have given the client a block too.
  const integrity = notes.some((note) => INTEGRITY_NOTES.has(note.code));
  const status: TraceStatus =
    matches.length === 0
      ? unreadable || integrity
        ? 'ambiguous'
        : 'not-found'
      : distinct > 1 ||
          hasSilentArchive(inPlay, matches) ||
          integrity ||
          notes.some(
            (note) => note.code === 'may-predate-archives' || note.code === 'kernel-drifted',
          )
        ? 'ambiguous'
        : 'found';
  return { status, notes, archives: inPlay, matches };
}
