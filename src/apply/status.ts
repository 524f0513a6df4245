/**
 * What is active: the rulesets held by the rules file, the newest archive and the kernel, read
 * back to client bindings and compared. They agree when all three bind every client the same.
 */
import type { Config } from '../config.js';
import { archiveBody } from '../archive/header.js';
import { newestArchive } from '../archive/store.js';
import { IptablesKernel } from '../netfilter/iptables.js';
import { NftKernel } from '../netfilter/nftables.js';
import type { CommandRunner } from '../netfilter/runner.js';
import { mostCommonSize, readAssignments, type ReadRules } from '../render/read-rules.js';
import { readRulesFile } from './apply.js';

export interface RulesetSummary {
  /** Where it was read from; undefined when there is none. */
  readonly source: string | undefined;
  readonly clients: number;
  readonly blockSize: number;
  readonly publicAddresses: readonly number[];
  /** A canonical fingerprint of the bindings, for comparison. */
  readonly bindings: string;
}

export interface ActiveStatus {
  readonly rulesFile: RulesetSummary;
  readonly archive: RulesetSummary & { readonly activatedAt: number | undefined };
  readonly kernel: RulesetSummary;
  readonly agree: boolean;
}

export function summarize(source: string | undefined, read: ReadRules | undefined): RulesetSummary {
  const assignments = read?.assignments ?? [];
  const seen = new Set<number>();
  const lines: string[] = [];
  for (const a of assignments) {
    if (seen.has(a.client)) continue; // tcp and udp rules of one client
    seen.add(a.client);
    lines.push(`${a.client}>${a.publicAddress}:${a.firstPort}-${a.lastPort}`);
  }
  return {
    source,
    clients: seen.size,
    blockSize: mostCommonSize(assignments),
    publicAddresses: [...new Set(assignments.map((a) => a.publicAddress))],
    bindings: lines.join('\n'),
  };
}

/** Our bindings as the kernel holds them now (undefined: the nft table does not exist). */
export async function kernelRules(
  config: Config,
  runner: CommandRunner,
): Promise<ReadRules | undefined> {
  if (config.firewall.backend === 'nftables') {
    const table = await new NftKernel(runner, config.firewall.nftTable).readTable();
    return table && { format: 'nft', blockSize: 0, assignments: table.clients };
  }
  return readAssignments(await new IptablesKernel(runner, config.firewall.iptables).saveNat());
}

/** Our IPv6 rules as the kernel prints them (ip6tables-save, or nft's table ip6), if any. */
export async function kernelRules6(
  config: Config,
  runner: CommandRunner,
): Promise<string | undefined> {
  if (config.firewall.backend === 'nftables')
    return new NftKernel(runner, config.firewall.nftTable).listTable6();
  return new IptablesKernel(runner, config.firewall.iptables, 6).saveNat();
}

export async function readActiveStatus(
  config: Config,
  runner: CommandRunner,
): Promise<ActiveStatus> {
  const { firewall } = config;
  const fileText = readRulesFile(firewall.rulesFile);
  const newest = newestArchive(firewall.archiveDir, firewall.backend);
  const kernel = await kernelRules(config, runner);
  const rulesFile = summarize(
    fileText === undefined ? undefined : firewall.rulesFile,
    fileText === undefined ? undefined : readAssignments(fileText),
  );
  const archive = {
    ...summarize(newest?.path, newest ? readAssignments(archiveBody(newest.text)) : undefined),
    activatedAt: newest?.entry.activatedAt,
  };
  const kernelSummary = summarize(
    kernel === undefined ? undefined : `${firewall.backend} kernel state`,
    kernel,
  );
  const agree =
    archive.source !== undefined &&
    rulesFile.bindings === archive.bindings &&
    kernelSummary.bindings === archive.bindings;
  return { rulesFile, archive, kernel: kernelSummary, agree };
}
