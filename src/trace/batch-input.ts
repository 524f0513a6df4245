/**
 * The rows of a batch of traces, as an abuse feed gives them: CSV with a header row naming at
 * least `time`, `address` and `port` (optional `proto`, any other columns kept for the output),
 * or JSON lines with those keys; the first character that is not blank tells which. A row that
 * cannot be read carries the reason and the batch goes on; only a file without the columns it
 * needs is refused as a whole.
 */
import { TnatError } from '../errors.js';
import { parseCsv, type CsvRecord } from './batch-csv.js';

/** The fields a row is traced by; the other fields are only passed through. */
export const QUERY_FIELDS = ['time', 'address', 'port', 'proto'] as const;
export type QueryField = (typeof QUERY_FIELDS)[number];
const REQUIRED: readonly QueryField[] = ['time', 'address', 'port'];

export interface BatchRow {
  /** From 1, counting data rows only (not the header, not blank lines). */
  readonly row: number;
  /** The line of the input it starts on. */
  readonly line: number;
  /** Every field as given, in input order: text from CSV, any JSON value from JSON lines. */
  readonly fields: ReadonlyMap<string, unknown>;
  /** The query fields as text, trimmed; absent or empty means not given. */
  readonly query: Readonly<Partial<Record<QueryField, string>>>;
  /** Why the row cannot be traced (without the file and line); undefined when it can. */
  readonly problem: string | undefined;
}

export interface BatchInput {
  readonly format: 'csv' | 'json-lines';
  /** The input's column names in order (JSON lines: every key, in the order first seen). */
  readonly columns: readonly string[];
  /** How the input ends its lines, for an output that matches it. */
  readonly lineEnd: '\r\n' | '\n';
  readonly rows: readonly BatchRow[];
}

function queryText(value: unknown): string | undefined {
  if (typeof value === 'string') return value.trim() === '' ? undefined : value.trim();
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  return undefined;
}

/** The query field a column or key names, without regard to case or surrounding blanks. */
function fieldOf(name: string): QueryField | undefined {
  return QUERY_FIELDS.find((wanted) => wanted === name.trim().toLowerCase());
}

/**
 * `"port" and "Port"`: names that are one query field, which a row would take from whichever
 * is not empty; undefined when each field is named once at most.
 */
function sameField(names: readonly string[]): string | undefined {
  for (const field of QUERY_FIELDS) {
    const named = names.filter((name) => fieldOf(name) === field);
    if (named.length > 1) return named.map((name) => `"${name}"`).join(' and ');
  }
  return undefined;
}

/** The query fields of a row, matching names without regard to case or surrounding blanks. */
function queryOf(fields: ReadonlyMap<string, unknown>): BatchRow['query'] {
  const query: Partial<Record<QueryField, string>> = {};
  for (const [name, value] of fields) {
    const field = fieldOf(name);
    if (field !== undefined && query[field] === undefined) {
      const text = queryText(value);
      if (text !== undefined) query[field] = text;
    }
  }
  return query;
}

function missingProblem(query: BatchRow['query']): string | undefined {
  // An IPv6 address may come without a port (prefix mode); the trace says when it needs one.
  const needed = query.address?.includes(':') ? (['time'] as const) : (['time', 'port'] as const);
  const missing = needed.filter((field) => query[field] === undefined);
  return missing.length === 0 ? undefined : `it gives no ${missing.join(' and no ')}`;
}

function csvHeader(header: CsvRecord, source: string): string[] {
  const where = { file: source, line: header.line };
  if (header.problem !== undefined) {
    throw new TnatError('E_USAGE', `the header row cannot be read: ${header.problem}`, { where });
  }
  const names = header.fields.map((name) => name.trim().toLowerCase());
  const missing = REQUIRED.filter((field) => !names.includes(field));
  if (missing.length > 0) {
    throw new TnatError(
      'E_USAGE',
      `the header row names no ${missing.join(', ')} column: the first row must name the columns, at least time, address and port`,
      { where },
    );
  }
  const twice = header.fields.find((name, index) => header.fields.indexOf(name) !== index);
  if (twice !== undefined) {
    throw new TnatError('E_USAGE', `the header row names "${twice}" twice: rename one`, {
      where,
    });
  }
  const same = sameField(header.fields);
  if (same !== undefined) {
    throw new TnatError(
      'E_USAGE',
      `the header row names ${same}, the same column: rename or remove one`,
      {
        where,
      },
    );
  }
  return [...header.fields];
}

function parseCsvInput(text: string, source: string): BatchInput {
  const [header, ...records] = parseCsv(text);
  if (!header) throw new TnatError('E_USAGE', `${source} is empty: give a header row and rows`);
  const columns = csvHeader(header, source);
  const rows = records.map((record, index): BatchRow => {
    const fields = new Map(columns.map((name, column) => [name, record.fields[column] ?? '']));
    const query = queryOf(fields);
    const count =
      record.fields.length === columns.length
        ? undefined
        : `it has ${record.fields.length} fields and the header ${columns.length}`;
    return {
      row: index + 1,
      line: record.line,
      fields,
      query,
      problem: record.problem ?? count ?? missingProblem(query),
    };
  });
  return { format: 'csv', columns, lineEnd: /^[^\n]*\r\n/.test(text) ? '\r\n' : '\n', rows };
}

function parseJsonLines(text: string): BatchInput {
  const rows: BatchRow[] = [];
  const columns = new Set<string>();
  text.split(/\r?\n/).forEach((lineText, index) => {
    if (lineText.trim() === '') return;
    let value: unknown;
    let problem: string | undefined;
    try {
      value = JSON.parse(lineText);
    } catch (error) {
      problem = `it is not JSON (${(error as Error).message})`;
    }
    const isObject = typeof value === 'object' && value !== null && !Array.isArray(value);
    if (problem === undefined && !isObject) problem = 'it is not a JSON object';
    const fields = new Map(Object.entries(isObject ? (value as object) : {}));
    for (const name of fields.keys()) columns.add(name);
    const query = queryOf(fields);
    const same = sameField([...fields.keys()]);
    rows.push({
      row: rows.length + 1,
      line: index + 1,
      fields,
      query,
      problem:
        problem ??
        (same === undefined ? undefined : `its keys ${same} name the same field: keep one`) ??
        missingProblem(query),
    });
  });
  return { format: 'json-lines', columns: [...columns], lineEnd: '\n', rows };
}

/** Reads a batch; `source` names it in messages (a file, or standard input). */
export function parseBatchInput(text: string, source: string): BatchInput {
  const first = /\S/.exec(text.replace(/^\ufeff/, ''))?.[0];
  if (first === undefined) {
    throw new TnatError('E_USAGE', `${source} is empty: give a header row and rows`);
  }
  if (first === '[') {
    throw new TnatError(
      'E_USAGE',
      `${source} is a JSON array: give one JSON object per line (JSON lines) or CSV`,
    );
  }
  return first === '{' ? parseJsonLines(text.replace(/^\ufeff/, '')) : parseCsvInput(text, source);
}
