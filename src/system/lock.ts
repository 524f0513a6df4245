/**
 * One applier at a time: the CLI and the daemon take an exclusive lock file before they touch
 * the firewall. The file holds who took it; a lock whose process is gone is stale and taken over.
 */
import { openSync, readFileSync, unlinkSync, writeSync, closeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { TnatError } from '../errors.js';
import { isProcessAlive } from './process-alive.js';

interface Holder {
  readonly pid: number;
  readonly command: string;
  readonly since: string;
}

function readHolder(path: string): Holder | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Holder;
  } catch {
    return undefined; // vanished, or being written right now: try again
  }
}

function tryCreate(path: string, holder: Holder): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o644);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new TnatError(
      'E_LOCK',
      `the lock file ${path} cannot be created (${(error as NodeJS.ErrnoException).code ?? 'error'}): check firewall.lockFile`,
      { cause: error },
    );
  }
  writeSync(fd, JSON.stringify(holder));
  closeSync(fd);
  return true;
}

export type ReleaseLock = () => void;

export async function acquireLock(
  path: string,
  timeoutMs: number,
  command: string,
): Promise<ReleaseLock> {
  const me: Holder = { pid: process.pid, command, since: new Date().toISOString() };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (tryCreate(path, me)) {
      return () => {
        if (readHolder(path)?.pid === me.pid) unlinkSync(path);
      };
    }
    const holder = readHolder(path);
    if (holder && !isProcessAlive(holder.pid)) {
      try {
        unlinkSync(path); // stale: its process is gone
      } catch {
        // someone else removed it first
      }
      continue;
    }
    if (Date.now() >= deadline) {
      const who = holder
        ? `process ${holder.pid} (${holder.command}, since ${holder.since})`
        : 'another process';
      throw new TnatError(
        'E_LOCK',
        `${path} is held by ${who}; waited ${Math.round(timeoutMs / 1000)} s: let it finish, or stop it and try again`,
      );
    }
    await sleep(100);
  }
}
