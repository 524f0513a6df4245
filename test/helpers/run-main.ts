/** The CLI's `main` run in this process, with what it printed and its exit status. */
import { main } from '../../src/cli/main.js';
import type { CliIo } from '../../src/cli/io.js';

export interface MainRun {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

export async function runMain(...args: string[]): Promise<MainRun> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: (text) => (stdout += text),
    stderr: (text) => (stderr += text),
    env: {},
  };
  const status = await main(args, io);
  return { status, stdout, stderr };
}
