/**
 * Issue 11: a FIFO as config.php hung the apply for ever. Every eduVPN source read must refuse
 * what is not a regular file, at once, naming it. The reads run in a child process with a time
 * limit, so the old, blocking code fails this test instead of hanging the test run.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const READER = resolve('dist/src/system/fs-source-reader.js');
const CLI = resolve('bin/traceable-nat');

/** Reads `path` with the real reader in a child; what it returned or threw, as JSON. */
function readInChild(path: string): { status: number | null; out: string } {
  const script = `
    const { fsSourceReader } = await import(${JSON.stringify(READER)});
    try {
      const text = fsSourceReader.readText(${JSON.stringify(path)});
      console.log(JSON.stringify({ text: text ?? null }));
    } catch (error) {
      console.log(JSON.stringify({ code: error.code, message: error.message }));
    }`;
  const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 5000,
  });
  return { status: result.status, out: result.stdout.trim() };
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tnat-reader-'));
  spawnSync('mkfifo', [join(dir, 'fifo.php')]);
  mkdirSync(join(dir, 'dir.php'));
  symlinkSync('/dev/null', join(dir, 'device.php'));
  writeFileSync(join(dir, 'regular.php'), '<?php return [];\n');
  symlinkSync(join(dir, 'regular.php'), join(dir, 'link.php'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('fsSourceReader', () => {
  test.each([
    ['fifo.php', 'a FIFO \\(named pipe\\)'],
    ['dir.php', 'a directory'],
    ['device.php', 'a device'],
  ])('refuses %s at once with E_SOURCE naming it', (name, kind) => {
    const path = join(dir, name);
    const result = readInChild(path);
    expect(result.status).toBe(0); // not killed by the time limit
    const answer = JSON.parse(result.out) as { code?: string; message?: string };
    expect(answer.code).toBe('E_SOURCE');
    expect(answer.message).toMatch(
      new RegExp(
        `^${path.replaceAll('.', '\\.')} is ${kind}, not a regular file, so it was not read: `,
      ),
    );
  });

  test('reads a regular file, also through a symlink, and says undefined for a missing one', () => {
    expect(JSON.parse(readInChild(join(dir, 'regular.php')).out)).toEqual({
      text: '<?php return [];\n',
    });
    expect(JSON.parse(readInChild(join(dir, 'link.php')).out)).toEqual({
      text: '<?php return [];\n',
    });
    expect(JSON.parse(readInChild(join(dir, 'missing.php')).out)).toEqual({ text: null });
  });

  test('the CLI with a FIFO as config.php exits 2 with one sentence instead of hanging', () => {
    const config = join(dir, 'config.yaml');
    writeFileSync(
      config,
      `eduvpn:\n  source: portal\n  portalConfig: ${join(dir, 'fifo.php')}\nnat:\n  publicAddresses: [192.0.2.1]\n  outInterface: eth0\n`,
    );
    const result = spawnSync(CLI, ['profiles', '--config', config], {
      encoding: 'utf8',
      timeout: 10000,
    });
    expect(result.signal).toBeNull();
    expect(result.status).toBe(2);
    expect(result.stderr.trim()).toMatch(/fifo\.php is a FIFO \(named pipe\), not a regular file/);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
  });
});
