/** Turns an error into one line on stderr and an exit status; a stack trace only for bugs. */
import { APPLY_FAILURE_CODES, isTnatError } from '../errors.js';
import { EXIT, type CliIo } from './io.js';

/** `program` names the command the operator typed: traceable-nat or vpn-generate-natfw. */
export function reportError(error: unknown, io: CliIo, program = 'traceable-nat'): number {
  if (isTnatError(error)) {
    io.stderr(`${program}: ${error.message}\n`);
    if (error.code === 'E_UNFINISHED') return EXIT.unfinished;
    return APPLY_FAILURE_CODES.has(error.code) ? EXIT.applyFailed : EXIT.badInput;
  }
  // parseArgs throws TypeErrors with a code for unknown or malformed options.
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) {
    io.stderr(`${program}: ${(error as Error).message}; run ${program} --help\n`);
    return EXIT.badInput;
  }
  // A bug, not bad input: keep the stack so it can be reported.
  io.stderr(
    `${program}: internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  return 70;
}
