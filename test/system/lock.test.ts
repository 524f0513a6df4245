import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { acquireLock } from '../../src/system/lock.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tnat-lock-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('acquireLock', () => {
  test('takes a free lock, records who holds it, and releases it', async () => {
    const path = join(dir, 'lock');
    const release = await acquireLock(path, 1000, 'test');
    expect(JSON.parse(readFileSync(path, 'utf8'))).toMatchObject({
      pid: process.pid,
      command: 'test',
    });
    release();
    expect(existsSync(path)).toBe(false);
  });

  test('a live holder makes the second applier wait, then fail naming it', async () => {
    const path = join(dir, 'lock');
    const release = await acquireLock(path, 1000, 'first');
    const started = Date.now();
    await expect(acquireLock(path, 300, 'second')).rejects.toThrow(
      new RegExp(`held by process ${process.pid} \\(first, since .*\\); waited 0 s`),
    );
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    release();
  });

  test('the lock is taken as soon as the holder releases it', async () => {
    const path = join(dir, 'lock');
    const release = await acquireLock(path, 1000, 'first');
    setTimeout(release, 200);
    const second = await acquireLock(path, 5000, 'second');
    expect(JSON.parse(readFileSync(path, 'utf8'))).toMatchObject({ command: 'second' });
    second();
  });

  test('a stale lock (its process is gone) is taken over', async () => {
    const path = join(dir, 'lock');
    const gone = spawnSync('true').pid;
    writeFileSync(path, JSON.stringify({ pid: gone, command: 'crashed', since: 'then' }));
    const release = await acquireLock(path, 1000, 'test');
    expect(JSON.parse(readFileSync(path, 'utf8'))).toMatchObject({ pid: process.pid });
    release();
  });

  test('an empty lock (an older version killed between creating and writing it) is taken over once it is old, not while fresh', async () => {
    const path = join(dir, 'lock');
    writeFileSync(path, '');
    // Fresh: it may be being written; the applier waits and then names nobody.
    await expect(acquireLock(path, 300, 'test')).rejects.toThrow(/held by another process/);
    const old = new Date(Date.now() - 10_000);
    utimesSync(path, old, old);
    const release = await acquireLock(path, 1000, 'test');
    expect(JSON.parse(readFileSync(path, 'utf8'))).toMatchObject({ pid: process.pid });
    release();
  });

  test('the lock never exists without its holder: it is linked into place already written, and what a killed applier left of that is removed', async () => {
    const path = join(dir, 'lock');
    const gone = spawnSync('true').pid;
    const orphan = join(dir, `lock.${gone}.0123456789ab.tmp`);
    const live = join(dir, `lock.${process.pid}.ba9876543210.tmp`);
    const foreign = join(dir, 'lock.notes.tmp');
    for (const file of [orphan, live, foreign]) writeFileSync(file, '{}');
    const release = await acquireLock(path, 1000, 'test');
    expect(readdirSync(dir).sort()).toEqual(
      ['lock', `lock.${process.pid}.ba9876543210.tmp`, 'lock.notes.tmp'].sort(),
    );
    expect(JSON.parse(readFileSync(path, 'utf8'))).toMatchObject({ pid: process.pid });
    release();
  });
});
