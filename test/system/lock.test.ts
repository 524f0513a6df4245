import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
});
