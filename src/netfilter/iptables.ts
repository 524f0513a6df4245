/** The iptables side of the kernel: read our part of the nat table, test and load a payload. */
import { CommandError } from '../errors.js';
import type { CommandRunner } from './runner.js';
import { withFailingLine } from './failing-line.js';

export type IptablesVariant = 'iptables' | 'iptables-legacy';

/** Seconds to wait for the xtables lock that other iptables users may hold (iptables-restore -w). */
const LOCK_WAIT_SECONDS = '10';

export class IptablesKernel {
  constructor(
    private readonly runner: CommandRunner,
    readonly variant: IptablesVariant,
  ) {}

  async saveNat(): Promise<string> {
    const result = await this.runner.run(`${this.variant}-save`, ['-t', 'nat']);
    return result.stdout;
  }

  /** Loads the payload atomically (validating it first); the kernel is unchanged on failure. */
  async restore(payload: string, onSpawn?: (pid: number) => void): Promise<void> {
    for (const args of [['--test'], []]) {
      try {
        await this.runner.run(
          `${this.variant}-restore`,
          ['--noflush', '-w', LOCK_WAIT_SECONDS, ...args],
          { input: payload, onSpawn: args.length === 0 ? onSpawn : undefined },
        );
      } catch (error) {
        if (error instanceof CommandError)
          throw withFailingLine(error, payload, 'iptables-restore payload');
        throw error;
      }
    }
  }
}
