/**
 * One applier at a time: the CLI and the daemon take an exclusive lock file before they touch
 * the firewall. The file holds who took it; a lock whose process is gone is stale and taken over.
 */
import { randomBytes } from 'node:crypto';
import { linkSync, readdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
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

/**
 * Creates the lock with its holder already in it: written to a file of our own first, then
 * hard-linked to the lock's name, which fails when the lock exists. Creating the lock empty
 * and writing into it would leave, after a kill -9 between the two, an empty lock that names
 * no process and so never looks stale: every later apply, the daemon's too, would wait on it.
 */
function tryCreate(path: string, holder: Holder): boolean {
  const own = `${path}.${holder.pid}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    writeFileSync(own, JSON.stringify(holder), { mode: 0o644, flag: 'wx' });
    linkSync(own, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new TnatError(
      'E_LOCK',
      `the lock file ${path} cannot be created (${(error as NodeJS.ErrnoException).code ?? 'error'}): check firewall.lockFile`,
      { cause: error },
    );
  } finally {
    try {
      unlinkSync(own);
    } catch {
      // never written
    }
  }
}

/** Files tryCreate wrote and a kill -9 left behind, of processes that are gone. */
function removeOrphanedOwnFiles(path: string): void {
  const prefix = `${basename(path)}.`;
  let names: string[];
  try {
    names = readdirSync(dirname(path));
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix) || !name.endsWith('.tmp')) continue;
    const [pid, random, ...rest] = name.slice(prefix.length, -'.tmp'.length).split('.');
    if (rest.length > 0 || !/^\d+$/.test(pid ?? '') || !/^[0-9a-f]{12}$/.test(random ?? ''))
      continue;
    if (isProcessAlive(Number(pid))) continue;
    try {
      unlinkSync(join(dirname(path), name));
    } catch {
      // removed by another applier first
    }
  }
}

/** How long a lock that names nobody (empty or unreadable) may stay before it counts as stale. */
const UNREADABLE_GRACE_MS = 5000;

/**
 * Whether the lock names nobody and is older than the grace time: never one of ours (tryCreate
 * writes the holder before the lock exists), but an older version's or one cut by a crash.
 */
function namesNobodyForLong(path: string): boolean {
  try {
    return Date.now() - statSync(path).mtimeMs > UNREADABLE_GRACE_MS;
  } catch {
    return false; // gone: the next try takes it
  }
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
      removeOrphanedOwnFiles(path);
      return () => {
        if (readHolder(path)?.pid === me.pid) unlinkSync(path);
      };
    }
    const holder = readHolder(path);
    if (holder ? !isProcessAlive(holder.pid) : namesNobodyForLong(path)) {
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
