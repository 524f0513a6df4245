/**
 * The one place that starts child processes (iptables-restore, nft, conntrack, the -c command).
 * Everything else builds text; tests can pass a runner that records or parses what it is given.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync, statfsSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

/** Where the process runner puts a child's output (see outputFile). */
export interface OutputPlaces {
  /** Directories to try, in order: a RAM-backed one first. */
  readonly dirs: readonly string[];
  /** A directory with less space free than this is passed over. */
  readonly minFreeBytes: number;
}

/**
 * /dev/shm is memory, which a full disk does not touch; the temporary directory after it (under
 * the unit, its own PrivateTmp=). 256 MiB free, many times a /16's largest listing (14.5 MB).
 */
export const OUTPUT_PLACES: OutputPlaces = {
  dirs: ['/dev/shm', tmpdir()],
  minFreeBytes: 256 * 1024 * 1024,
};

export const processRunner: CommandRunner = createProcessRunner(OUTPUT_PLACES);

export function createProcessRunner(places: OutputPlaces): CommandRunner {
  return { run: (command, args, options = {}) => runProcess(places, command, args, options) };
}

function runProcess(
  places: OutputPlaces,
  command: string,
  args: readonly string[],
  options: RunOptions,
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const output = outputFile(places);
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(command, args, { stdio: ['pipe', output?.fd ?? 'pipe', 'pipe'] });
    } catch (error) {
      output?.take();
      throw error;
    }
    if (child.pid !== undefined) options.onSpawn?.(child.pid);
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.on('error', (error: NodeJS.ErrnoException) => {
      output?.take();
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
        stdout: (output?.take() ?? Buffer.concat(stdout)).toString('utf8'),
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
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(options.input ?? '');
  });
}

/**
 * Where a child's standard output goes: an unlinked temporary file, read back in one piece when
 * the child is done, instead of a pipe. A /16's `iptables-save` is 14.5 MB, which a pipe hands
 * over in 64 KiB buffers that are joined and freed again, and the daemon's resident memory kept
 * what that left behind (issue 13: idle 25 s after a restart on an iptables /16, 83.5 -> 72.0
 * MiB; 77.2 MiB with the pipe's buffers copied into one growing buffer). A file on a full file
 * system would cut the output short, and most tools exit 0 all the same: only a directory with
 * `minFreeBytes` free is taken. Undefined where there is none: the output comes through a pipe.
 */
function outputFile(places: OutputPlaces): { readonly fd: number; take(): Buffer } | undefined {
  for (const dir of places.dirs) {
    if (freeBytes(dir) < places.minFreeBytes) continue;
    const fd = openUnlinked(dir);
    if (fd !== undefined) return readBack(fd);
  }
  return undefined;
}

/** A new file in `dir`, open for reading and writing, already unlinked; undefined if none. */
function openUnlinked(dir: string): number | undefined {
  const path = join(dir, `traceable-nat-out-${process.pid}-${randomBytes(6).toString('hex')}`);
  let fd: number;
  try {
    fd = openSync(path, 'wx+', 0o600);
  } catch {
    return undefined;
  }
  try {
    unlinkSync(path);
    return fd;
  } catch {
    closeSync(fd);
    return undefined;
  }
}

function readBack(fd: number): { readonly fd: number; take(): Buffer } {
  let open = true;
  return {
    fd,
    /** The whole output, once; the file is closed after (an empty buffer when taken again). */
    take() {
      if (!open) return Buffer.alloc(0);
      open = false;
      try {
        const size = fstatSync(fd).size;
        const bytes = Buffer.allocUnsafeSlow(size);
        let read = 0;
        while (read < size) {
          const count = readSync(fd, bytes, read, size - read, read);
          if (count === 0) break;
          read += count;
        }
        return bytes.subarray(0, read);
      } finally {
        closeSync(fd);
      }
    },
  };
}

/** What an unprivileged writer may still put in `dir`; 0 when it cannot be known. */
function freeBytes(dir: string): number {
  try {
    const stat = statfsSync(dir);
    return stat.bavail * stat.bsize;
  } catch {
    return 0;
  }
}

function packageOf(command: string): string {
  if (command.startsWith('iptables')) return 'iptables';
  if (command === 'nft') return 'nftables';
  return command;
}
