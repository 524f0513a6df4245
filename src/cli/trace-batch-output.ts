/**
 * One answered row of `trace --batch`: as CSV (the input's columns, then status, client, user,
 * profile and notes) or as one JSON object per line (the object of `trace --json`, with `row`
 * and the input's fields). The JSON keeps every detail; the CSV is what a spreadsheet or a
 * reply needs, with several values in a cell joined by `|`.
 */
import { TnatError } from '../errors.js';
import { formatAddress } from '../net/address.js';
import { csvRecord } from '../trace/batch-csv.js';
import type { BatchInput, BatchRow } from '../trace/batch-input.js';
import type { TraceStatus } from '../trace/notes.js';
import { traceJson, type TraceReport } from './trace-report.js';

export type BatchStatus = TraceStatus | 'bad-input';

/** A row's answer: a report, or why the row could not be traced (with file and line). */
export type RowAnswer =
  | { readonly status: TraceStatus; readonly report: TraceReport }
  | { readonly status: 'bad-input'; readonly reason: string };

export const ADDED_COLUMNS = ['status', 'client', 'user', 'profile', 'notes'] as const;

function distinct(values: readonly (string | null)[]): string {
  return [...new Set(values.filter((value): value is string => value !== null))].join('|');
}

/** The notes of a report, the users' reasons and the zone assumed, in that order. */
function notesText(report: TraceReport): string {
  const { time, result } = report;
  const users = result.candidates.flatMap((candidate) => {
    const user = report.users.get(candidate.client);
    return user?.reason ? [`${formatAddress(candidate.client)}: ${user.reason}`] : [];
  });
  const zone = time.zoneAssumed
    ? [`no zone given: read in the server's zone ${time.zone} as ${time.utc}`]
    : [];
  return [...result.notes.map((note) => note.message), ...users, ...zone].join(' | ');
}

function addedCells(answer: RowAnswer): string[] {
  if (answer.status === 'bad-input') return ['bad-input', '', '', '', answer.reason];
  const { report } = answer;
  const { candidates } = report.result;
  const sessions = candidates.flatMap(
    (candidate) => report.users.get(candidate.client)?.sessions ?? [],
  );
  return [
    answer.status,
    candidates.map((candidate) => formatAddress(candidate.client)).join('|'),
    distinct(sessions.map((session) => session.userId)),
    distinct(sessions.map((session) => session.profileId)),
    notesText(report),
  ];
}

/** A field of the input as a CSV cell: JSON lines may hold numbers, nulls or objects. */
function cellOf(value: unknown): string {
  if (value === undefined || value === null) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value);
}

/** The CSV header, refusing input columns whose names the output adds. */
export function csvHeaderLine(input: BatchInput, source: string): string {
  const taken = input.columns.filter((name) =>
    (ADDED_COLUMNS as readonly string[]).includes(name.trim().toLowerCase()),
  );
  if (taken.length > 0) {
    throw new TnatError(
      'E_USAGE',
      `${source} has a column ${taken.map((name) => `"${name}"`).join(', ')}, which the output adds (${ADDED_COLUMNS.join(', ')}): rename it, or give --json`,
    );
  }
  return csvRecord([...input.columns, ...ADDED_COLUMNS], input.lineEnd);
}

export function csvRowLine(input: BatchInput, row: BatchRow, answer: RowAnswer): string {
  return csvRecord(
    [...input.columns.map((name) => cellOf(row.fields.get(name))), ...addedCells(answer)],
    input.lineEnd,
  );
}

export function jsonRowLine(row: BatchRow, answer: RowAnswer): string {
  const input = Object.fromEntries(row.fields);
  const object =
    answer.status === 'bad-input'
      ? { row: row.row, input, status: answer.status, reason: answer.reason }
      : { row: row.row, input, ...traceJson(answer.report) };
  return `${JSON.stringify(object)}\n`;
}
