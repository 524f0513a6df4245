/**
 * The few error classes the tool raises. Each carries a stable code (listed in the README) and a
 * message that is one sentence an operator can act on; `where` names the file, line and column
 * when the problem sits in a file.
 */

export type ErrorCode =
  | 'E_USAGE' // wrong command line
  | 'E_CONFIG' // traceable-nat's own YAML configuration
  | 'E_SOURCE' // an eduVPN file: missing, unreadable, syntax, or a value that makes no sense
  | 'E_MAPPING' // the clients do not fit the configured ports and addresses
  | 'E_RULES_FILE' // the firewall rules file cannot be read or merged
  | 'E_COMMAND' // iptables-restore, nft, conntrack ... failed
  | 'E_LOCK' // another applier holds the lock
  | 'E_ARCHIVE' // the archive of rulesets is unreadable or inconsistent
  | 'E_WRITE' // the rules file or an archive cannot be written: nothing was applied
  | 'E_UNFINISHED'; // the new rules are active, but recording them did not finish

/** Codes that mean "applying failed; the previous rules stay active" rather than bad input. */
export const APPLY_FAILURE_CODES: ReadonlySet<ErrorCode> = new Set([
  'E_COMMAND',
  'E_LOCK',
  'E_WRITE',
]);

export interface Where {
  readonly file: string;
  readonly line?: number | undefined;
  readonly column?: number | undefined;
}

export function formatWhere(where: Where): string {
  let text = where.file;
  if (where.line !== undefined) {
    text += `:${where.line}`;
    if (where.column !== undefined) text += `:${where.column}`;
  }
  return text;
}

export class TnatError extends Error {
  override readonly name: string = 'TnatError';
  readonly code: ErrorCode;
  readonly where: Where | undefined;

  constructor(code: ErrorCode, sentence: string, options: { where?: Where; cause?: unknown } = {}) {
    super(options.where ? `${formatWhere(options.where)}: ${sentence}` : sentence, {
      cause: options.cause,
    });
    this.code = code;
    this.where = options.where;
  }
}

/**
 * A load that failed after the kernel took part of the new ruleset (IPv4 loaded, IPv6 refused,
 * and the IPv4 rules could not be put back): the apply keeps what records it, as after a kill.
 */
export class PartialLoadError extends TnatError {
  override readonly name = 'PartialLoadError';
}

/** A child process that failed: the command, its exit status and what it printed on stderr. */
export class CommandError extends TnatError {
  override readonly name = 'CommandError';
  readonly command: readonly string[];
  readonly exitCode: number | null;
  readonly stderr: string;

  constructor(
    sentence: string,
    details: {
      command: readonly string[];
      exitCode: number | null;
      stderr: string;
      cause?: unknown;
    },
  ) {
    super('E_COMMAND', sentence, { cause: details.cause });
    this.command = details.command;
    this.exitCode = details.exitCode;
    this.stderr = details.stderr;
  }
}

export function isTnatError(error: unknown): error is TnatError {
  return error instanceof TnatError;
}
