/**
 * From (time, port, public address) to the client address, using only the archived rulesets
 * of that moment: which public addresses were ours and who held which block comes from them,
 * never from today's configuration. When the archives cannot tell for sure, the answer says
 * why and gives every candidate instead of picking one.
 */
import { formatAddress, type Address } from '../net/address.js';
import type { ReadAssignment } from '../render/read-rules.js';
import { ipv6Of, uses6 } from './archive6.js';
import {
  archivesInPlay,
  coverageNotes,
  futureNote,
  groupBy,
  hasSilentArchive,
  driftNotes,
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
  type ActiveAround,
  type LoadedArchive,
} from './timeline.js';

export interface Candidate {
  /** IPv4 (number) or IPv6 (bigint), as the query's address. */
  readonly client: Address;
  /** Oldest archive first. */
  readonly matches: readonly BlockMatch[];
}

export interface TraceQuery {
  /** Unix seconds. */
  readonly at: number;
  /** Needed except for an IPv6 address of prefix mode, whose every port is its client's. */
  readonly port?: number | undefined;
  /** IPv4 (number) or IPv6 (bigint); an IPv6 query reads the activations' IPv6 halves. */
  readonly address?: Address | undefined;
  readonly proto?: 'tcp' | 'udp' | undefined;
  readonly marginSeconds?: number | undefined;
  /** Unix seconds of now; a later moment (beyond a small clock skew) is not answered. */
  readonly now?: number | undefined;
}

export interface TraceResult {
  readonly status: TraceStatus;
  readonly notes: readonly TraceNote[];
  /** Every archive that may have been active at the time (and, with an address, uses it). */
  readonly archives: readonly LoadedArchive<Address>[];
  readonly candidates: readonly Candidate[];
}

/** A query of one family: the address, when given, is of the archives' address type. */
type FamilyQuery<A extends Address> = Omit<TraceQuery, 'address'> & {
  readonly address?: A | undefined;
};

function holdsPort(assignment: ReadAssignment<Address>, query: FamilyQuery<Address>): boolean {
  const { port } = query;
  return (
    (query.address === undefined || assignment.publicAddress === query.address) &&
    (port === undefined
      ? assignment.netmap !== undefined
      : port >= assignment.firstPort && port <= assignment.lastPort) &&
    (query.proto === undefined || assignment.proto === 'both' || assignment.proto === query.proto)
  );
}

function candidatesOf(matches: readonly BlockMatch[]): Candidate[] {
  return [...groupBy(matches, (match) => match.assignment.client)].map(([client, list]) => ({
    client,
    matches: list,
  }));
}

/** The public addresses (and, IPv6 prefix mode, prefixes) of the archives, as text. */
function addressesOf(archives: readonly LoadedArchive<Address>[]): string[] {
  return [
    ...new Set(
      archives.flatMap((archive) => [
        ...archive.publicAddresses.map(formatAddress),
        ...(archive.netmaps ?? []).map((netmap) => netmap.to),
      ]),
    ),
  ];
}

function notOursNote(
  query: FamilyQuery<Address>,
  considered: readonly LoadedArchive<Address>[],
): TraceNote {
  const address = formatAddress(query.address ?? 0);
  const list = addressesOf(considered).join(', ');
  const untranslated = considered.filter((archive) => archive.ipv6State === 'not-ours');
  const without =
    untranslated.length === 0
      ? ''
      : ` (${untranslated.map((archive) => archive.entry.name).join(', ')} held no IPv6 rules of ours: eduVPN's own masquerade translated IPv6 clients then, which cannot be traced by port)`;
  return {
    code: 'address-not-ours',
    message:
      list === ''
        ? `${address} was not one of our public addresses at ${formatUtc(query.at)}: the rulesets active then translated no IPv6 address${without}`
        : `${address} was not one of our public addresses at ${formatUtc(query.at)}: the rulesets active then used ${list}${without}`,
  };
}

function addressNotes(
  query: FamilyQuery<Address>,
  considered: readonly LoadedArchive<Address>[],
  relevant: readonly LoadedArchive<Address>[],
  matches: readonly BlockMatch[],
): TraceNote[] {
  const used = new Set(considered.flatMap((archive) => archive.publicAddresses));
  const list = addressesOf(considered).join(', ');
  if (query.address !== undefined && relevant.length === 0 && considered.length > 0) {
    return [notOursNote(query, considered)];
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
  'kernel-drifted',
  'address-needed',
  'several-nodes',
]);

function statusOf(
  candidates: readonly Candidate[],
  inPlay: readonly LoadedArchive<Address>[],
  matches: readonly BlockMatch[],
  notes: readonly TraceNote[],
): TraceStatus {
  // An IPv6 half that cannot be read may have named a client: no answer is no "not found".
  const unreadable = inPlay.some((archive) => archive.ipv6State === 'unreadable');
  // A damaged or missing archive may have named a client too.
  const integrity = notes.some((note) => INTEGRITY_NOTES.has(note.code));
  if (candidates.length === 0) return unreadable || integrity ? 'ambiguous' : 'not-found';
  if (candidates.length > 1) return 'ambiguous';
  const doubt = integrity || notes.some((note) => DOUBTS.has(note.code));
  return doubt || hasSilentArchive(inPlay, matches) ? 'ambiguous' : 'found';
}

function nodeNotes(query: FamilyQuery<Address>, matches: readonly BlockMatch[]): TraceNote[] {
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

function noBlockNote(
  query: FamilyQuery<Address>,
  relevant: readonly LoadedArchive<Address>[],
): TraceNote {
  const names = relevant.map((archive) => archive.entry.name).join(' or ');
  const { address, port } = query;
  const blocks = relevant.some(
    (archive) => address === undefined || archive.publicAddresses.includes(address),
  );
  if (!blocks) {
    return {
      code: 'port-in-no-block',
      message: `${formatAddress(address ?? 0)} is in our public prefix in ${names} but maps back to no client range there: it was no VPN client's`,
    };
  }
  if (port === undefined) {
    return {
      code: 'port-needed',
      message: `${formatAddress(address ?? 0)} was a port-block address in ${names}: give --port, the port names the client`,
    };
  }
  const where = address === undefined ? '' : ` on ${formatAddress(address)}`;
  return {
    code: 'port-in-no-block',
    message: `port ${port}${where} is in no client's block in ${names}: it was not a VPN client's (the server's own traffic, an excluded port, or a port outside the range)`,
  };
}

/** The trace over the archives of one family (IPv4 rulesets, or the IPv6 halves of them). */
function traceAround<A extends Address>(
  around: readonly ActiveAround<A>[],
  query: FamilyQuery<A>,
  uses: (archive: LoadedArchive<A>, address: A) => boolean,
): TraceResult {
  const margin = query.marginSeconds ?? SWITCH_MARGIN_SECONDS;
  const considered = around.flatMap((node) => node.archives);
  const { address } = query;
  const relevant =
    address === undefined ? considered : considered.filter((archive) => uses(archive, address));
  const inPlay = archivesInPlay(considered, relevant);
  const matches: BlockMatch[] = relevant.flatMap((archive) =>
    (archive.holding?.(query.port ?? 0, address) ?? archive.assignments())
      .filter((assignment) => holdsPort(assignment, query))
      .map((assignment) => ({ archive, assignment })),
  );
  const candidates = candidatesOf(matches);
  const notes = [
    ...coverageNotes(around, relevant, query.at),
    ...addressNotes(query, considered, relevant, matches),
    ...(relevant.length > 0 ? switchNotes(inPlay, margin) : []),
    ...integrityNotes(inPlay, query.at, margin),
    ...driftNotes(around, inPlay, query.at, margin),
    ...nodeNotes(query, matches),
  ];
  const readable = relevant.filter((archive) => archive.ipv6State !== 'unreadable');
  if (readable.length > 0 && matches.length === 0) notes.push(noBlockNote(query, readable));
  return {
    status: statusOf(candidates, inPlay, matches, notes),
    notes,
    archives: inPlay,
    candidates,
  };
}

export function traceArchives(dirs: readonly ArchiveDir[], query: TraceQuery): TraceResult {
  const future = futureNote(query.at, query.now);
  if (future) return { status: 'not-found', notes: [future], archives: [], candidates: [] };
  const margin = query.marginSeconds ?? SWITCH_MARGIN_SECONDS;
  const around = dirs.map((dir) => activeAround(dir, query.at, margin));
  const { address } = query;
  if (typeof address === 'bigint') {
    const around6 = around.map((node) => ({ ...node, archives: node.archives.map(ipv6Of) }));
    return traceAround(around6, { ...query, address }, uses6);
  }
  return traceAround(around, { ...query, address }, (archive, wanted) =>
    archive.publicAddresses.includes(wanted),
  );
}

/** Notes that leave an address unaccounted for by our rulesets (and nothing else in doubt). */
const NOT_OURS: ReadonlySet<TraceNoteCode> = new Set([
  'address-not-ours',
  'no-archives',
  'before-first-archive',
]);

/**
 * Whether no ruleset of that moment translated to the address, so it may be a client's own
 * (eduVPN without NAT66 gives clients global addresses that leave untranslated).
 */
export function mayBeOwnAddress(result: TraceResult): boolean {
  return (
    result.candidates.length === 0 &&
    result.notes.length > 0 &&
    result.notes.every((note) => NOT_OURS.has(note.code))
  );
}

/** The answer when the portal names `address` as a client's own: the client is the address. */
export function asOwnAddress(result: TraceResult, address: bigint): TraceResult {
  const note: TraceNote = {
    code: 'own-address',
    message: `${formatAddress(address)} was no address our rulesets translated to, and the portal's connection_log names it as a VPN client's own address (eduVPN gives clients public IPv6 addresses without NAT66): the user is that session's`,
  };
  return {
    status: 'found',
    notes: [...result.notes, note],
    archives: result.archives,
    candidates: [{ client: address, matches: [] }],
  };
}
