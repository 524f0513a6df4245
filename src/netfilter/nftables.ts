/** The nftables side of the kernel: read our table, check and load a transaction with `nft -f`. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommandError } from '../errors.js';
import { withFailingLine } from './failing-line.js';
import type { CommandRunner } from './runner.js';
import {
  parseNftChainsJson,
  parseNftTableJson,
  type NftChainsView,
  type NftTableView,
} from './nft-json.js';

export class NftKernel {
  constructor(
    private readonly runner: CommandRunner,
    readonly table: string,
  ) {}

  /** Our table as `nft -j list table ip <table>` gives it, or undefined when it does not exist. */
  async readTable(): Promise<NftTableView | undefined> {
    const text = await this.listTable(['-j']);
    return text === undefined ? undefined : parseNftTableJson(text);
  }

  /**
   * Our table's chains without their rules or any map element (`nft -j list chains ip`, some
   * 10 ms whatever the table holds): enough to read the canary.
   */
  async readChains(): Promise<NftChainsView> {
    const args = ['-j', 'list', 'chains', 'ip'];
    const result = await this.runner.run('nft', args);
    return parseNftChainsJson(result.stdout, this.table);
  }

  /** Our `table ip6` as `nft list table ip6 <table>` prints it, or undefined when there is none. */
  async listTable6(): Promise<string | undefined> {
    return this.listTable([], 'ip6');
  }

  /** `nft [options] list table <family> <table>`, or undefined when the table does not exist. */
  private async listTable(
    options: readonly string[] = [],
    family: 'ip' | 'ip6' = 'ip',
  ): Promise<string | undefined> {
    const args = [...options, 'list', 'table', family, this.table];
    const result = await this.runner.run('nft', args, { allowFailure: true });
    if (result.exitCode === 0) return result.stdout;
    if (result.stderr.includes('No such file or directory')) return undefined;
    throw new CommandError(
      `nft list table ${family} ${this.table} failed: ${result.stderr.trim()}`,
      {
        command: ['nft', ...args],
        exitCode: result.exitCode,
        stderr: result.stderr,
      },
    );
  }

  /**
   * Loads the transaction with `nft -f`: one netlink batch, which the kernel takes whole or
   * not at all, so the kernel is unchanged on failure (a check with `nft -c` first would only
   * parse and send it twice). From a file written whole before nft starts, never from a pipe:
   * nft commits whatever it read when its input ends, so an applier killed while writing a
   * pipe at a line boundary would leave a cut transaction committed (a `delete table` without
   * the table that follows).
   */
  async load(transaction: string, onSpawn?: (pid: number) => void): Promise<void> {
    const dir = mkdtempSync(join(tmpdir(), 'traceable-nat-'));
    const file = join(dir, 'transaction.nft');
    try {
      writeFileSync(file, transaction, { mode: 0o600 });
      await this.runner.run('nft', ['-f', file], { onSpawn });
    } catch (error) {
      if (error instanceof CommandError)
        throw withFailingLine(error, transaction, 'nft transaction');
      throw error;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}
