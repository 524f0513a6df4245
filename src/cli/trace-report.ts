/**
 * The answer of `trace` as text an abuse desk can paste into a reply, and as the stable JSON
 * object documented in the README. Only candidates' client addresses appear in either.
 */
import { join } from 'node:path';
import { formatAddress, type Address } from '../net/address.js';
import { formatIpv4 } from '../net/ipv4.js';
import type { ReadAssignment } from '../render/read-rules.js';
import type { PortalSession, UserAnswer } from '../trace/sessions.js';
import { formatUtc, type IncidentTime } from '../trace/time.js';
import type { LoadedArchive } from '../trace/timeline.js';
import type { BlockMatch, TraceNote, TraceStatus } from '../trace/notes.js';
import type { Candidate, TraceResult } from '../trace/trace.js';
import { EXIT } from './io.js';

export const EXIT_FOR_STATUS = {
  found: EXIT.ok,
  ambiguous: EXIT.ambiguous,
  'not-found': EXIT.notOk,
} as const satisfies Record<TraceStatus, number>;

export interface TraceReport {
  readonly time: IncidentTime;
  /** Undefined: an IPv6 query without a port (prefix mode needs none). */
  readonly port: number | undefined;
  readonly address: Address | undefined;
  readonly proto: 'tcp' | 'udp' | undefined;
  readonly result: TraceResult;
  /** Per candidate client. */
  readonly users: ReadonlyMap<Address, UserAnswer>;
  readonly profilesToday: ReadonlyMap<Address, string>;
  /** The IPv4 twin of each IPv6 candidate, from today's pools (none when unknown). */
  readonly twins: ReadonlyMap<Address, number>;
}

/** The trace's status, then the user's: one client and one user (or no database) is found. */
export function overallStatus(report: TraceReport): TraceStatus {
  const { result } = report;
  const only = result.candidates[0];
  if (result.status !== 'found' || !only) return result.status;
  const user = report.users.get(only.client)?.status ?? 'unavailable';
  return user === 'ambiguous' ? 'ambiguous' : user === 'none' ? 'not-found' : 'found';
}

export function archiveFile(archive: LoadedArchive<Address>): string {
  return join(archive.dir, archive.entry.name);
}

export function archiveJson(archive: LoadedArchive<Address>) {
  return {
    file: archiveFile(archive),
    ours: archive.ours,
    activatedAt: formatUtc(archive.entry.activatedAt),
    applyStarted:
      archive.ours && archive.applyStartedAt > 0 ? formatUtc(archive.applyStartedAt) : null,
    until: archive.nextActivatedAt === undefined ? null : formatUtc(archive.nextActivatedAt),
    publicAddresses: archive.publicAddresses.map(formatAddress),
    ...(archive.netmaps?.length ? { publicPrefixes: archive.netmaps.map(({ to }) => to) } : {}),
  };
}

export function blockJson(match: BlockMatch) {
  const { publicAddress, firstPort, lastPort, proto } = match.assignment;
  return {
    archive: archiveFile(match.archive),
    publicAddress: formatAddress(publicAddress),
    firstPort,
    lastPort,
    proto,
    ...(match.assignment.netmap ? { netmap: match.assignment.netmap } : {}),
  };
}

function sessionJson(session: PortalSession) {
  return {
    userId: session.userId,
    profileId: session.profileId,
    connectionId: session.connectionId,
    vpnProto: session.vpnProto,
    connectedAt: session.connectedAt,
    disconnectedAt: session.disconnectedAt,
    connectedAtUtc: session.connectedAtUtc,
    disconnectedAtUtc: session.disconnectedAtUtc,
    timesAre: session.timesAre,
    database: session.database,
    schema: session.schema,
  };
}

export function timeJson(time: IncidentTime) {
  return { ...time };
}

export function traceJson(report: TraceReport) {
  const { result } = report;
  return {
    status: overallStatus(report),
    time: timeJson(report.time),
    query: {
      port: report.port ?? null,
      address: report.address === undefined ? null : formatAddress(report.address),
      proto: report.proto ?? null,
    },
    archives: result.archives.map(archiveJson),
    candidates: result.candidates.map((candidate) => {
      const user = report.users.get(candidate.client);
      const twin = report.twins.get(candidate.client);
      return {
        client: formatAddress(candidate.client),
        ...(typeof candidate.client === 'bigint'
          ? { twin: twin === undefined ? null : formatIpv4(twin) }
          : {}),
        profileToday: report.profilesToday.get(candidate.client) ?? null,
        blocks: candidate.matches.map(blockJson),
        user: {
          status: user?.status ?? 'unavailable',
          reason: user?.reason ?? null,
          sessions: (user?.sessions ?? []).map(sessionJson),
        },
      };
    }),
    notes: result.notes.map((note) => ({ code: note.code, message: note.message })),
  };
}

const LABEL = 11;

/** One `Label      text` line of the human report. */
export function reportLine(label: string, text: string): string {
  return `${label.padEnd(LABEL)}${text}\n`;
}

export function timeLine(time: IncidentTime): string {
  const zone = time.zoneAssumed
    ? `no zone given: read in the server's zone ${time.zone}`
    : time.zone;
  return reportLine('Time', `${time.given} = ${time.utc} (${zone})`);
}

export function rulesetLines(archives: readonly LoadedArchive<Address>[]): string {
  return archives
    .map((archive) => {
      const started =
        archive.ours &&
        archive.applyStartedAt > 0 &&
        archive.applyStartedAt !== archive.entry.activatedAt
          ? `, apply started ${formatUtc(archive.applyStartedAt)}`
          : '';
      const until =
        archive.nextActivatedAt === undefined
          ? 'still active'
          : `replaced ${formatUtc(archive.nextActivatedAt)}`;
      const origin = archive.ours ? '' : ', written by the original vpn-generate-natfw';
      return reportLine(
        'Ruleset',
        `${archiveFile(archive)}: active ${formatUtc(archive.entry.activatedAt)}${started}, ${until}${origin}`,
      );
    })
    .join('');
}

export function blockText(assignment: ReadAssignment<Address>): string {
  const { publicAddress, netmap } = assignment;
  if (netmap) {
    return `${formatAddress(publicAddress)}, every port (NETMAP ${netmap.range} -> ${netmap.to})`;
  }
  const protocols = assignment.proto === 'both' ? 'tcp and udp' : assignment.proto;
  // IPv6 as ip6tables and nft write an address with a port: in brackets.
  const where =
    typeof publicAddress === 'bigint'
      ? `[${formatAddress(publicAddress)}]`
      : formatAddress(publicAddress);
  return `${where} ports ${assignment.firstPort}-${assignment.lastPort} (${protocols})`;
}

/** A client as the report names it: an IPv6 client with its IPv4 twin when today's pools know it. */
export function clientText(client: Address, twin: number | undefined): string {
  return twin === undefined
    ? formatAddress(client)
    : `${formatAddress(client)} (twin of ${formatIpv4(twin)})`;
}

function sessionText(session: PortalSession): string {
  const parts = [
    `profile ${session.profileId ?? '?'}`,
    session.schema === '3.x'
      ? `connection ${session.connectionId ?? '?'}`
      : `certificate ${session.connectionId ?? '?'}`,
    ...(session.vpnProto ? [session.vpnProto] : []),
    `connected ${session.connectedAt}`,
    session.disconnectedAt === null ? 'not disconnected' : `disconnected ${session.disconnectedAt}`,
  ];
  return `${session.userId ?? '(no user id)'}: ${parts.join(', ')}`;
}

function userLines(user: UserAnswer | undefined): string {
  if (!user || user.status === 'unavailable') return reportLine('User', user?.reason ?? 'unknown');
  if (user.status === 'none') return reportLine('User', `none: ${user.reason ?? ''}`);
  const sources = [
    ...new Set(user.sessions.map((s) => `${s.database}, eduVPN ${s.schema}, times ${s.timesAre}`)),
  ];
  return [
    ...user.sessions.map((session) => reportLine('User', sessionText(session))),
    ...sources.map((source) => reportLine('', `(${source})`)),
    ...(user.status === 'ambiguous' ? [reportLine('', user.reason ?? '')] : []),
  ].join('');
}

function candidateLines(report: TraceReport, candidate: Candidate): string {
  const today = report.profilesToday.get(candidate.client);
  return [
    reportLine(
      'Client',
      clientText(candidate.client, report.twins.get(candidate.client)) +
        (today ? ` (profile today: ${today})` : ''),
    ),
    ...candidate.matches.map((match) =>
      reportLine('', `${blockText(match.assignment)} in ${match.archive.entry.name}`),
    ),
    userLines(report.users.get(candidate.client)),
  ].join('');
}

export function noteLines(notes: readonly TraceNote[]): string {
  return notes.map((note) => reportLine('Note', note.message)).join('');
}

function answerText(report: TraceReport, status: TraceStatus): string {
  const clients = report.result.candidates.map((candidate) => formatAddress(candidate.client));
  const only = report.result.candidates[0];
  const users = only ? (report.users.get(only.client)?.sessions ?? []) : [];
  const userIds = [...new Set(users.map((session) => session.userId ?? '(no user id)'))];
  if (status === 'found') {
    return `FOUND: client ${clients.join('')}, ${userIds.length === 1 ? `user ${userIds.join('')}` : 'user unknown'}`;
  }
  if (status === 'ambiguous') {
    if (clients.length === 0) return 'AMBIGUOUS: no client can be named, see the notes';
    if (clients.length > 1) return `AMBIGUOUS: ${clients.length} candidates: ${clients.join(', ')}`;
    if (userIds.length > 1)
      return `AMBIGUOUS: client ${clients.join('')}, users ${userIds.join(', ')}`;
    if (only && report.users.get(only.client)?.status === 'ambiguous')
      return `AMBIGUOUS: client ${clients.join('')}, user ${userIds.join('')} in doubt, see the User lines`;
    return `AMBIGUOUS: client ${clients.join('')}, but see the notes`;
  }
  return clients.length > 0
    ? `NOT FOUND: client ${clients.join('')}, but no portal session matches`
    : 'NOT FOUND: see the notes';
}

export function traceText(report: TraceReport): string {
  const { result } = report;
  const protocols = report.proto ?? 'tcp or udp';
  const address =
    report.address === undefined ? 'any of our addresses' : formatAddress(report.address);
  const port = report.port === undefined ? 'any port' : `port ${report.port}`;
  return [
    timeLine(report.time),
    reportLine('Query', `${address} ${port}, ${protocols}`),
    rulesetLines(result.archives),
    ...result.candidates.map((candidate) => candidateLines(report, candidate)),
    noteLines(result.notes),
    reportLine('Answer', answerText(report, overallStatus(report))),
  ].join('');
}
