/**
 * The answer of `trace` as text an abuse desk can paste into a reply, and as the stable JSON
 * object documented in the README. Only candidates' client addresses appear in either.
 */
import { join } from 'node:path';
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
  readonly port: number;
  readonly address: number | undefined;
  readonly proto: 'tcp' | 'udp' | undefined;
  readonly result: TraceResult;
  /** Per candidate client. */
  readonly users: ReadonlyMap<number, UserAnswer>;
  readonly profilesToday: ReadonlyMap<number, string>;
}

/** The trace's status, then the user's: one client and one user (or no database) is found. */
export function overallStatus(report: TraceReport): TraceStatus {
  const { result } = report;
  const only = result.candidates[0];
  if (result.status !== 'found' || !only) return result.status;
  const user = report.users.get(only.client)?.status ?? 'unavailable';
  return user === 'ambiguous' ? 'ambiguous' : user === 'none' ? 'not-found' : 'found';
}

export function archiveFile(archive: LoadedArchive): string {
  return join(archive.dir, archive.entry.name);
}

export function archiveJson(archive: LoadedArchive) {
  return {
    file: archiveFile(archive),
    ours: archive.ours,
    activatedAt: formatUtc(archive.entry.activatedAt),
    applyStarted: archive.ours ? formatUtc(archive.applyStartedAt) : null,
    until: archive.nextActivatedAt === undefined ? null : formatUtc(archive.nextActivatedAt),
    publicAddresses: archive.publicAddresses.map(formatIpv4),
  };
}

export function blockJson(match: BlockMatch) {
  const { publicAddress, firstPort, lastPort, proto } = match.assignment;
  return {
    archive: archiveFile(match.archive),
    publicAddress: formatIpv4(publicAddress),
    firstPort,
    lastPort,
    proto,
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
      port: report.port,
      address: report.address === undefined ? null : formatIpv4(report.address),
      proto: report.proto ?? null,
    },
    archives: result.archives.map(archiveJson),
    candidates: result.candidates.map((candidate) => {
      const user = report.users.get(candidate.client);
      return {
        client: formatIpv4(candidate.client),
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

export function rulesetLines(archives: readonly LoadedArchive[]): string {
  return archives
    .map((archive) => {
      const started =
        archive.ours && archive.applyStartedAt !== archive.entry.activatedAt
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

export function blockText(assignment: ReadAssignment): string {
  const protocols = assignment.proto === 'both' ? 'tcp and udp' : assignment.proto;
  return `${formatIpv4(assignment.publicAddress)} ports ${assignment.firstPort}-${assignment.lastPort} (${protocols})`;
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
      formatIpv4(candidate.client) + (today ? ` (profile today: ${today})` : ''),
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
  const clients = report.result.candidates.map((candidate) => formatIpv4(candidate.client));
  const only = report.result.candidates[0];
  const users = only ? (report.users.get(only.client)?.sessions ?? []) : [];
  const userIds = [...new Set(users.map((session) => session.userId ?? '(no user id)'))];
  if (status === 'found') {
    return `FOUND: client ${clients.join('')}, ${userIds.length === 1 ? `user ${userIds.join('')}` : 'user unknown'}`;
  }
  if (status === 'ambiguous') {
    if (clients.length > 1) return `AMBIGUOUS: ${clients.length} candidates: ${clients.join(', ')}`;
    if (userIds.length > 1)
      return `AMBIGUOUS: client ${clients.join('')}, users ${userIds.join(', ')}`;
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
    report.address === undefined ? 'any of our addresses' : formatIpv4(report.address);
  return [
    timeLine(report.time),
    reportLine('Query', `${address} port ${report.port}, ${protocols}`),
    rulesetLines(result.archives),
    ...result.candidates.map((candidate) => candidateLines(report, candidate)),
    noteLines(result.notes),
    reportLine('Answer', answerText(report, overallStatus(report))),
  ].join('');
}
