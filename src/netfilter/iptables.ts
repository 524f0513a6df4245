/** The iptables side of the kernel: read our part of the nat table, test and load a payload. */
import { CommandError } from '../errors.js';
import type { CommandRunner } from './runner.js';
import { withFailingLine } from './failing-line.js';

export type IptablesVariant = 'iptables' | 'iptables-legacy';

/** Seconds to wait for the xtables lock that other iptables users may hold (iptables-restore -w). */
const LOCK_WAIT_SECONDS = '10';

export class IptablesKernel {
  /** `iptables`, `ip6tables`, `iptables-legacy` or `ip6tables-legacy`: -save/-restore follow. */
  private readonly command: string;

  constructor(
    private readonly runner: CommandRunner,
    readonly variant: IptablesVariant,
    readonly family: 4 | 6 = 4,
  ) {
    this.command = family === 6 ? variant.replace('iptables', 'ip6tables') : variant;
  }

  async saveNat(): Promise<string> {
    const result = await this.runner.run(`${this.command}-save`, ['-t', 'nat']);
    return result.stdout;
  }

  /**
   * The rules of one nat chain as `iptables -S` lists them (`-N`/`-P`, then `-A` lines), or
   * undefined when it cannot be listed (no such chain, or no nat table at all; iptables-nft
   * may call a missing chain "incompatible"). Milliseconds, where the whole table takes
   * seconds; a caller falls back to reading the whole table when this says nothing.
   */
  async listChain(chain: string): Promise<string | undefined> {
    const args = ['-w', LOCK_WAIT_SECONDS, '-t', 'nat', '-S', chain];
    const result = await this.runner.run(this.command, args, { allowFailure: true });
    return result.exitCode === 0 ? result.stdout : undefined;
  }

  /** `--test`: whether the kernel would take the payload; changes nothing. */
  async test(payload: string): Promise<void> {
    await this.run(payload, ['--test']);
  }

  /**
   * Loads the payload in one transaction, all of it or none of it: iptables-restore commits a
   * table at its COMMIT line (iptables-nft as one netlink batch, iptables-legacy as one table
   * replacement), and input that ends before it commits nothing.
   */
  async load(payload: string, onSpawn?: (pid: number) => void): Promise<void> {
    await this.run(payload, [], onSpawn);
  }

  private async run(
    payload: string,
    args: readonly string[],
    onSpawn?: (pid: number) => void,
  ): Promise<void> {
    try {
      await this.runner.run(
        `${this.command}-restore`,
        ['--noflush', '-w', LOCK_WAIT_SECONDS, ...args],
        {
          input: payload,
          onSpawn,
        },
      );
    } catch (error) {
      if (error instanceof CommandError)
        throw withFailingLine(error, payload, `${this.command}-restore payload`);
      throw error;
    }
  }
}
