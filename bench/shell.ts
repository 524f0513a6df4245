/** Running commands (on the host or inside a namespace) and timing them. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { processRunner, type CommandRunner, type RunOptions } from '../src/netfilter/runner.js';

/** The installed command, as an operator runs it. */
export const CLI = fileURLToPath(new URL('../../bin/traceable-nat', import.meta.url));

/** `iptables-save` of a /16 is some 15 MB; the default 1 MiB buffer would cut it off. */
const MAX_OUTPUT = 1 << 30;
/** No single command of the benchmark may hang it. */
const COMMAND_TIMEOUT_MS = 120_000;

/** Runs a command to completion and returns its stdout; throws with its stderr on failure. */
export function run(args: readonly string[], input = ''): string {
  const [command = 'false', ...rest] = args;
  try {
    return execFileSync(command, rest, {
      encoding: 'utf8',
      input,
      maxBuffer: MAX_OUTPUT,
      timeout: COMMAND_TIMEOUT_MS,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
  } catch (error) {
    const stderr = (error as { stderr?: unknown }).stderr;
    const detail = typeof stderr === 'string' && stderr !== '' ? `: ${stderr.trim()}` : '';
    throw new Error(`${args.join(' ').slice(0, 200)} failed${detail}`, { cause: error });
  }
}

export function runIn(ns: string, args: readonly string[], input = ''): string {
  return run(['ip', 'netns', 'exec', ns, ...args], input);
}

/** Milliseconds `action` took, with its result. */
export function timed<T>(action: () => T): { readonly value: T; readonly ms: number } {
  const start = performance.now();
  const value = action();
  return { value, ms: performance.now() - start };
}

export interface RecordedCommand {
  readonly command: string;
  readonly args: readonly string[];
  readonly input: string;
  /** performance.now() when it started and when it finished. */
  readonly start: number;
  readonly end: number;
}

/**
 * A CommandRunner for applyRuleset that runs every command inside `ns` (never on the host)
 * and records what it ran, with the input and the time each took.
 */
export function recordingNamespaceRunner(ns: string, log: RecordedCommand[]): CommandRunner {
  return {
    async run(command, args, options: RunOptions = {}) {
      // nft loads its transaction from a file the applier removes afterwards: the record holds
      // the text, replayed from standard input (`-f -`).
      const file =
        command === 'nft' && args.includes('-f') ? args[args.indexOf('-f') + 1] : undefined;
      const fileText = file !== undefined && file !== '-' ? readFileSync(file, 'utf8') : undefined;
      const recorded =
        fileText === undefined
          ? { args, input: options.input ?? '' }
          : { args: args.map((arg) => (arg === file ? '-' : arg)), input: fileText };
      const start = performance.now();
      try {
        return await processRunner.run('ip', ['netns', 'exec', ns, command, ...args], options);
      } finally {
        log.push({ command, ...recorded, start, end: performance.now() });
      }
    },
  };
}

/** A command that changes the kernel's rules (a real load, not a `--test`/`-c` check). */
export function isKernelWrite(entry: RecordedCommand): boolean {
  if (entry.command === 'nft') return entry.args.includes('-f') && !entry.args.includes('-c');
  return entry.command.endsWith('-restore') && !entry.args.includes('--test');
}
