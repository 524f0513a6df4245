/**
 * From (time, port, public address) to the client address, using only the archived rulesets
 * of that moment: which public addresses were ours and who held which block comes from them,
 * never from today's configuration. When the archives cannot tell for sure, the answer says
 * why and gives every candidate instead of picking one.
 */
import { formatIpv4 } from '../net/ipv4.js';
import type { ReadAssignment } from '../render/read-rules.js';
import {
  archivesInPlay,
  coverageNotes,
  futureNote,
  groupBy,
  hasSilentArchive,
  integrityNotes,
  INTEGRITY_NOTES,
  switchNotes,
  type BlockMatch,
  type TraceNote,
  type TraceNoteCode,
  type TraceStatus,
} from './notes.js';
import { formatUtc } from './time.js';
import {
  activeAround,
  SWITCH_MARGIN_SECONDS,
  type ArchiveDir,
  type LoadedArchive,
} from './timeline.js';

export interface Candidate {
  readonly client: number;
  /** Oldest archive first. */
  readonly matches: readonly BlockMatch[];
}

export interface TraceQuery {
  /** Unix seconds. */
  readonly at: number;
  readonly port: number;
  readonly address?: number | undefined;
  readonly proto?: 'tcp' | 'udp' | undefined;
  readonly marginSeconds?: number | undefined;
  /** Unix seconds of now; a later moment (beyond a small clock skew) is not answered. */
  readonly now?: number | undefined;
}

export interface TraceResult {
  readonly status: TraceStatus;
  readonly notes: readonly TraceNote[];
  /** Every archive that may have been active at the time (and, with an address, uses it). */
  readonly archives: readonly LoadedArchive[];
  readonly candidates: readonly Candidate[];
}

function holdsPort(assignment: ReadAssignment, query: TraceQuery): boolean {
  return (
    (query.address === undefined || assignment.publicAddress === query.address) &&
    query.port >= assignment.firstPort &&
    query.port <= assignment.lastPort &&
    (query.proto === undefined || assignment.proto === 'both' || assignment.proto === query.proto)
  );
}

function candidatesOf(matches: readonly BlockMatch[]): Candidate[] {
  return [...groupBy(matches, (match) => match.assignment.client)].map(([client, list]) => ({
    client,
    matches: list,
  }));
}

function addressNotes(
  query: TraceQuery,
  considered: readonly LoadedArchive[],
  relevant: readonly LoadedArchive[],
  matches: readonly BlockMatch[],
): TraceNote[] {
  const used = new Set(considered.flatMap((archive) => archive.publicAddresses));
  const list = [...used].map(formatIpv4).join(', ');
  if (query.address !== undefined && relevant.length === 0 && considered.length > 0) {
    return [
      {
        code: 'address-not-ours',
        message: `${formatIpv4(query.address)} was not one of our public addresses at ${formatUtc(query.at)}: the rulesets active then used ${list}`,
      },
    ];
  }
  if (query.address === undefined && used.size > 1 && matches.length > 0) {
    return [
      {
        code: 'address-needed',
        message: `the rulesets active then used several public addresses (${list}) and the port means a different client, or none, on each: give --address`,
      },
    ];
  }
  return [];
}

const DOUBTS: ReadonlySet<TraceNoteCode> = new Set([
  'may-predate-archives',
  'address-needed',
  'several-nodes',
]);

function statusOf(
  candidates: readonly Candidate[],
  inPlay: readonly LoadedArchive[],
  matches: readonly BlockMatch[],
  notes: readonly TraceNote[],
): TraceStatus {
  if (candidates.length === 0) return 'not-found';
  if (candidates.length > 1) return 'ambiguous';
  const doubt = notes.some((note) => DOUBTS.has(note.code) || INTEGRITY_NOTES.has(note.code));
  return doubt || hasSilentArchive(inPlay, matches) ? 'ambiguous' : 'found';
}

function nodeNotes(query: TraceQuery, matches: readonly BlockMatch[]): TraceNote[] {
  const dirs = [...new Set(matches.map((match) => match.archive.dir))];
  if (dirs.length < 2) return [];
  const advice =
    query.address === undefined
      ? 'give --address to pick the node'
      : 'the nodes share this public address, so the archives cannot tell them apart';
  return [
    {
      code: 'several-nodes',
      message: `the port is in a client's block on more than one node (${dirs.join(', ')}): ${advice}`,
    },
  ];
}

export function traceArchives(dirs: readonly ArchiveDir[], query: TraceQuery): TraceResult {
  const future = futureNote(query.at, query.now);
  if (future) return { status: 'not-found', notes: [future], archives: [], candidates: [] };
  const margin = query.marginSeconds ?? SWITCH_MARGIN_SECONDS;
  const around = dirs.map((dir) => activeAround(dir, query.at, margin));
  const considered = around.flatMap((node) => node.archives);
  const { address } = query;
  const relevant =
    address === undefined
      ? considered
      : considered.filter((archive) => archive.publicAddresses.includes(address));
  const inPlay = archivesInPlay(considered, relevant);
  const matches = relevant.flatMap((archive) =>
    (archive.holding?.(query.port, address) ?? archive.assignments)
      .filter((assignment) => holdsPort(assignment, query))
      .map((assignment) => ({ archive, assignment })),
  );
  const candidates = candidatesOf(matches);
  const notes = [
    ...coverageNotes(around, relevant, query.at),
    ...addressNotes(query, considered, relevant, matches),
    ...(relevant.length > 0 ? switchNotes(inPlay, margin) : []),
    ...integrityNotes(inPlay),
    ...nodeNotes(query, matches),
  ];
  if (relevant.length > 0 && matches.length === 0) {
    const where = address === undefined ? '' : ` on ${formatIpv4(address)}`;
    notes.push({
      code: 'port-in-no-block',
      message: `port ${query.port}${where} is in no client's block in ${relevant.map((archive) => archive.entry.name).join(' or ')}: it was not a VPN client's (the server's own traffic, an excluded port, or a port outside the range)`,
    });
  }
  return {
    status: statusOf(candidates, inPlay, matches, notes),
    notes,
    archives: inPlay,
    candidates,
  };
}
