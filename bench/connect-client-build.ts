/**
 * Builds bench/connect-client.c with `cc -O2` into a temporary directory (removed by the
 * cleanup): the connect sections' measuring client, a C program because node's own overhead
 * per connect is several times the kernel's (issue 13).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Cleanup } from './cleanup.js';

const SOURCE = fileURLToPath(new URL('../../bench/connect-client.c', import.meta.url));

/** The path of the built client; throws one sentence when there is no `cc`. */
export function buildConnectClient(cleanup: Cleanup): string {
  const dir = mkdtempSync(join(tmpdir(), 'tnbench-client-'));
  cleanup.add(`directory ${dir}`, () => {
    rmSync(dir, { recursive: true, force: true });
  });
  const binary = join(dir, 'connect-client');
  try {
    execFileSync('cc', ['-O2', '-o', binary, SOURCE], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(
        'the connect benchmark compiles its client with cc, and there is no cc: install gcc',
        { cause: error },
      );
    }
    const stderr = (error as { stderr?: Buffer }).stderr?.toString('utf8').trim() ?? '';
    throw new Error(`cc -O2 ${SOURCE} failed: ${stderr}`, { cause: error });
  }
  return binary;
}
