/**
 * `traceable-nat trace --batch FILE` (`-` for standard input): every row of an abuse feed
 * traced in one process. Fast by design (issue 15): the archive names are listed once, each
 * archive is parsed once (rows are answered in time order through a small cache of parsed
 * archives, src/trace/batch-archives.ts), the portal databases are opened once, and the output
 * still lists the rows in input order. The exit status is the worst row's.
 */
import { readFileSync } from 'node:fs';
import { isTnatError, TnatError } from '../errors.js';
import { withArchiveCache } from '../trace/batch-archives.js';
import { parseBatchInput, type BatchRow } from '../trace/batch-input.js';
import { parseIncidentTime, type LocalZone } from '../trace/time.js';
import type { CommandContext, OptionValues } from './command.js';
import { EXIT } from './io.js';
import { traceAnswerer, type TraceRequest } from './trace-answer.js';
import {
  csvHeaderLine,
  csvRowLine,
  jsonRowLine,
  type BatchStatus,
  type RowAnswer,
} from './trace-batch-output.js';
import { parseAddress, parsePort, parseProto } from './trace-query.js';
import { EXIT_FOR_STATUS, overallStatus } from './trace-report.js';
import { archiveDirsFor, zoneFor } from './trace-sources.js';

/**
 * Worst first: a row that cannot be read needs the feed fixed; an ambiguous one needs a person;
 * not-found is an answer (not our client); found is what every row should be. The exit status is
 * the worst row's, so 0 means every row found one client and user.
 */
const WORST_FIRST: readonly BatchStatus[] = ['bad-input', 'ambiguous', 'not-found', 'found'];

const EXIT_FOR_BATCH: Record<BatchStatus, number> = {
  ...EXIT_FOR_STATUS,
  'bad-input': EXIT.badInput,
};

const SINGLE_OPTIONS = ['at', 'port', 'address', 'proto'] as const;

function readBatch(file: string): string {
  try {
    return readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    throw new TnatError(
      'E_USAGE',
      `--batch ${file} cannot be read (${code}): give a readable file, or - for standard input`,
      { cause: error },
    );
  }
}

/** The row's query, or the sentence that says why it has none. */
function requestOf(row: BatchRow, zone: LocalZone): TraceRequest | string {
  const { query } = row;
  if (row.problem !== undefined) return row.problem;
  try {
    const address =
      query.address === undefined ? undefined : parseAddress(query.address, 'address');
    return {
      time: parseIncidentTime(query.time ?? '', zone),
      // An IPv6 address of prefix mode needs no port (the trace says when one is needed).
      port:
        query.port === undefined && typeof address === 'bigint'
          ? undefined
          : parsePort(query.port ?? '', 'port'),
      address,
      proto: query.proto === undefined ? undefined : parseProto(query.proto, 'proto'),
    };
  } catch (error) {
    if (isTnatError(error)) return error.message;
    throw error;
  }
}

export function runTraceBatch(context: CommandContext, options: OptionValues): Promise<number> {
  const file = String(options.batch);
  const given = SINGLE_OPTIONS.filter((name) => options[name] !== undefined);
  if (given.length > 0) {
    throw new TnatError(
      'E_USAGE',
      `--batch takes each row's ${given.join(', ')} from the file: leave out --${given.join(', --')}`,
    );
  }
  const source = file === '-' ? 'standard input' : file;
  const input = parseBatchInput(readBatch(file), source);
  const render = (row: BatchRow, answer: RowAnswer) =>
    options.json ? jsonRowLine(row, answer) : csvRowLine(input, row, answer);
  const header = options.json ? '' : csvHeaderLine(input, source);
  const zone = zoneFor(context.io);
  const config = context.config();
  const statuses: BatchStatus[] = [];
  // Each row is rendered as soon as it is answered: a report holds its parsed archives.
  const lines: string[] = [];
  const traced: { row: BatchRow; index: number; request: TraceRequest }[] = [];
  input.rows.forEach((row, index) => {
    const request = requestOf(row, zone);
    if (typeof request !== 'string') {
      traced.push({ row, index, request });
      return;
    }
    statuses[index] = 'bad-input';
    lines[index] = render(row, {
      status: 'bad-input',
      reason: `${source} line ${String(row.line)}: ${request}`,
    });
  });
  // In time order, so each archive is parsed once and then left behind for good.
  traced.sort((a, b) => a.request.time.unixSeconds - b.request.time.unixSeconds);
  const answerer = traceAnswerer(config, withArchiveCache(archiveDirsFor(config, options)), zone);
  try {
    for (const { row, index, request } of traced) {
      let report;
      try {
        report = answerer.answer(request);
      } catch (error) {
        // An IPv6 port-block address without a port: that row's input is wrong, not the batch.
        if (!isTnatError(error) || error.code !== 'E_USAGE') throw error;
        statuses[index] = 'bad-input';
        const reason = `${source} line ${String(row.line)}: ${error.message}`;
        lines[index] = render(row, { status: 'bad-input', reason });
        continue;
      }
      statuses[index] = overallStatus(report);
      lines[index] = render(row, { status: overallStatus(report), report });
    }
  } finally {
    answerer.close();
  }
  context.io.stdout(header + lines.join(''));
  const worst = WORST_FIRST.find((status) => statuses.includes(status));
  return Promise.resolve(EXIT_FOR_BATCH[worst ?? 'found']);
}
