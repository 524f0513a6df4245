/** What a command may touch of the outside world, passed in so tests can run commands in-process. */
export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** Exit statuses shared by every command (the README lists them). */
export const EXIT = {
  ok: 0,
  /** `status` found disagreement, or a trace or lookup found nothing. */
  notOk: 1,
  /** Bad input (command line, configuration, eduVPN files, rules file, archives), or a failed
   * `check` step. Nothing was changed. */
  badInput: 2,
  /** A trace found more than one candidate. */
  ambiguous: 3,
  /** Applying failed in the kernel or on disk; the previous rules stay active. */
  applyFailed: 4,
  /** The new rules are active, but recording them did not finish; the next apply finishes it. */
  unfinished: 5,
} as const;

export function processIo(): CliIo {
  return {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    env: process.env,
  };
}
