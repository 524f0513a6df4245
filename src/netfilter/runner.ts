/**
 * The one place that starts child processes (iptables-restore, nft, conntrack, the -c command).
 * Everything else builds text; tests can pass a runner that records or parses what it is given.
 */
import { spawn } from 'node:child_process';
import { CommandError } from '../errors.js';

export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly exitCode: number;
}

export interface RunOptions {
  /** Written to the child's stdin. */
  readonly input?: string;
  /** Return a non-zero exit instead of throwing. */
  readonly allowFailure?: boolean;
  /** Told the child's pid as soon as it runs (a recovery after a kill -9 waits for it). */
  readonly onSpawn?: ((pid: number) => void) | undefined;
}

export interface CommandRunner {
  run(command: string, args: readonly string[], options?: RunOptions): Promise<RunResult>;
}

export const processRunner: CommandRunner = {
  run(command, args, options = {}) {
    return new Promise((resolve, reject) => {
      const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
      if (child.pid !== undefined) options.onSpawn?.(child.pid);
      const stdout: Buffer[] = [];
      const stderr: Buffer[] = [];
      child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
      child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
      child.on('error', (error: NodeJS.ErrnoException) => {
        const missing = error.code === 'ENOENT';
        reject(
          new CommandError(
            missing
              ? `${command} is not installed: install it (apt-get install ${packageOf(command)})`
              : `${command} could not be started: ${error.message}`,
            { command: [command, ...args], exitCode: null, stderr: '', cause: error },
          ),
        );
      });
      child.on('close', (code, signal) => {
        const result = {
          stdout: Buffer.concat(stdout).toString('utf8'),
          stderr: Buffer.concat(stderr).toString('utf8'),
          exitCode: code ?? 128,
        };
        if (result.exitCode === 0 || options.allowFailure) {
          resolve(result);
          return;
        }
        const reason = signal ? `was killed by ${signal}` : `exited with status ${result.exitCode}`;
        const firstLine = result.stderr.trim().split('\n')[0] ?? '';
        reject(
          new CommandError(`${command} ${reason}${firstLine ? `: ${firstLine}` : ''}`, {
            command: [command, ...args],
            exitCode: code,
            stderr: result.stderr,
          }),
        );
      });
      // A child that exits early (bad option) closes stdin; that is reported through 'close'.
      child.stdin.on('error', () => undefined);
      child.stdin.end(options.input ?? '');
    });
  },
};

function packageOf(command: string): string {
  if (command.startsWith('iptables')) return 'iptables';
  if (command === 'nft') return 'nftables';
  return command;
}
