/**
 * The part every user-space fake of a kernel tool shares: it records each command it is given
 * and answers it synchronously, a thrown error becoming the rejected run the real runner gives.
 */
import type { CommandRunner, RunOptions, RunResult } from '../../src/netfilter/runner.js';

export abstract class FakeRunner implements CommandRunner {
  /** Every command run, as `command arg ...`. */
  readonly calls: string[] = [];

  run(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    this.calls.push([command, ...args].join(' '));
    try {
      return Promise.resolve(this.answer(command, args, options));
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  protected abstract answer(
    command: string,
    args: readonly string[],
    options: RunOptions,
  ): RunResult;
}
