/**
 * What is active: the rulesets held by the rules file, the newest archive and the kernel, read
 * back to client bindings and compared. They agree when all three bind every client the same.
 */
import type { Config } from '../config.js';
import { archiveBody, parseArchiveHeader } from '../archive/header.js';
import { newestArchive, readIpv6Half, type StoredArchive } from '../archive/store.js';
import { fingerprint6, table6Of, translations6, translationsKey } from '../render/fingerprint6.js';
import { IptablesKernel } from '../netfilter/iptables.js';
import { NftKernel } from '../netfilter/nftables.js';
import type { CommandRunner } from '../netfilter/runner.js';
import { mostCommonSize, readAssignments, type ReadRules } from '../render/read-rules.js';
import { readKernelNat } from '../netfilter/iptables-payload.js';
import { diffChains, extractNatPart } from '../render/rules-file.js';
import type { NftTableView } from '../netfilter/nft-json.js';
import { nftChainRight } from './drivers.js';
import { ourPartOf } from './plan.js';
import { readRulesFile } from './snapshot.js';

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
  /** The IPv6 side, when nat6 is set or the newest archive has one. */
  readonly ipv6: ActiveStatus6 | undefined;
  /**
   * Whether the kernel holds the newest archive's IPv4 ruleset rule for rule (holdsRuleset):
   * a deleted jump or rule leaves the bindings read back the same. Undefined: no archive.
   */
  readonly kernelTree: boolean | undefined;
  /**
   * Whether the rules file holds our part of the newest archive's ruleset as it is (our chains
   * and jump, or our nft tables): a jump deleted from rules.v4 by hand leaves every binding in
   * it, and a boot would load rules that no packet reaches. Undefined: no archive or no file.
   */
  readonly rulesFileTree: boolean | undefined;
  /** Both families agree. */
  readonly agree: boolean;
}

/** One IPv6 ruleset read back: its translations (client or range -> where to). */
export interface Summary6 {
  readonly source: string | undefined;
  /** Clients (port blocks) or client ranges (prefix mode) translated. */
  readonly sources: number;
  /** The public addresses or prefixes they are translated to. */
  readonly targets: readonly string[];
  readonly fingerprint: string;
}

export interface ActiveStatus6 {
  readonly rulesFile: Summary6;
  readonly archive: Summary6;
  readonly kernel: Summary6;
  readonly agree: boolean;
}

export function summarize6(source: string | undefined, text: string | undefined): Summary6 {
  const found = translations6(text ?? '');
  const targets = new Set([...found.values()].map((to) => to.replace(/^\[(.*)\]:.*$/, '$1')));
  return {
    source: text === undefined ? undefined : source,
    sources: found.size,
    targets: [...targets],
    // nftables: the leaf map too (a /124 no longer looked up translates nobody).
    fingerprint: `${translationsKey(text ?? '')}\n${fingerprint6(text ?? '')}`,
  };
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

/** Our IPv4 nat rules as the kernel holds them now, read whole. */
export interface KernelRead {
  /** Our bindings (undefined: the nft table does not exist). */
  readonly rules: ReadRules | undefined;
  /** iptables: the `iptables-save -t nat` text they were read from. */
  readonly save: string | undefined;
  /** nftables: our table as listed (undefined: it does not exist). */
  readonly table: NftTableView | undefined;
}

/** Our bindings as the kernel holds them now (undefined: the nft table does not exist). */
export async function kernelRules(
  config: Config,
  runner: CommandRunner,
): Promise<ReadRules | undefined> {
  return (await readKernel(config, runner)).rules;
}

export async function readKernel(config: Config, runner: CommandRunner): Promise<KernelRead> {
  if (config.firewall.backend === 'nftables') {
    const table = await new NftKernel(runner, config.firewall.nftTable).readTable();
    return {
      rules: table && { format: 'nft', blockSize: 0, assignments: table.clients },
      save: undefined,
      table,
    };
  }
  const save = await new IptablesKernel(runner, config.firewall.iptables).saveNat();
  return { rules: readAssignments(save), save, table: undefined };
}

/** The archive digest the kernel's one canary names (src/render/iptables.ts, nftables.ts). */
export function kernelCanary(kernel: KernelRead): string | undefined {
  if (kernel.save !== undefined) return readKernelNat(kernel.save).canary;
  const canaries = kernel.table?.canaries ?? [];
  return canaries.length === 1 ? canaries[0] : undefined;
}

/**
 * Whether the kernel holds the IPv4 ruleset of ours that `archived` (an archive's text) has,
 * rule for rule: with iptables our chains, and our jump ahead of every other SNAT and
 * MASQUERADE rule; with nftables our chain hooked and written as rendered for the interface
 * the archive was made for, and both maps binding every client as the archive does. Bindings
 * alone would miss a deleted jump or udp rule, or another outgoing interface.
 */
export function holdsRuleset(kernel: KernelRead, archived: string): boolean {
  const body = archiveBody(archived);
  if (kernel.save !== undefined) return sameTree(kernel.save, body);
  const { table } = kernel;
  if (table === undefined) return false;
  const outInterface = parseArchiveHeader(archived)?.settings.outInterface;
  return (
    typeof outInterface === 'string' &&
    nftChainRight(table, outInterface) &&
    table.othersMatch &&
    summarize(undefined, { format: 'nft', blockSize: 0, assignments: table.clients }).bindings ===
      summarize(undefined, readAssignments(body)).bindings
  );
}

/** Whether a rules file's text holds our part of `newest`'s ruleset as it is (see rulesFileTree). */
function sameOurPart(
  fileText: string,
  file: string,
  newest: StoredArchive,
  backend: Config['firewall']['backend'],
): boolean {
  try {
    return (
      ourPartOf(fileText, backend, file) ===
      ourPartOf(archiveBody(newest.text), backend, newest.path)
    );
  } catch {
    // A rules file that no longer parses holds nothing of ours that a boot could load.
    return false;
  }
}

/**
 * Whether `save` (iptables-save -t nat) holds our chains rule for rule as the archived ruleset
 * does, and our jump into them ahead of every other SNAT and MASQUERADE rule.
 */
function sameTree(save: string, archivedBody: string): boolean {
  const kernel = readKernelNat(save);
  const ours = extractNatPart(archivedBody);
  const { changed, removed, added } = diffChains(kernel.chains, ours.chains);
  if (changed.length + removed.length + added.length > 0) return false;
  if (ours.jump === undefined) return kernel.jumps.length === 0;
  return kernel.jumpFirst && kernel.jumps.includes(ours.jump);
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
  const read = await readKernel(config, runner);
  const kernel = read.rules;
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
  const kernelTree = newest === undefined ? undefined : holdsRuleset(read, newest.text);
  const rulesFileTree =
    newest === undefined || fileText === undefined
      ? undefined
      : sameOurPart(fileText, firewall.rulesFile, newest, firewall.backend);
  const agree4 =
    archive.source !== undefined &&
    rulesFile.bindings === archive.bindings &&
    kernelSummary.bindings === archive.bindings &&
    kernelTree !== false &&
    rulesFileTree !== false;
  const ipv6 = await readActiveStatus6(config, runner, newest);
  return {
    rulesFile,
    archive,
    kernel: kernelSummary,
    kernelTree,
    rulesFileTree,
    ipv6,
    agree: agree4 && (ipv6?.agree ?? true),
  };
}

async function readActiveStatus6(
  config: Config,
  runner: CommandRunner,
  newest: StoredArchive | undefined,
): Promise<ActiveStatus6 | undefined> {
  const { firewall } = config;
  const iptables = firewall.backend === 'iptables';
  const vouched = newest && parseArchiveHeader(newest.text)?.ipv6;
  const half =
    iptables && newest && vouched ? readIpv6Half(firewall.archiveDir, newest.entry) : undefined;
  // nftables: the table ip6 of the one file (its table ip would count in the fingerprint).
  const archived = iptables ? half?.text : newest && table6Of(newest.text);
  const archive = summarize6(
    iptables ? half?.path : newest?.path,
    archived && archiveBody(archived),
  );
  if (config.nat6 === undefined && archive.sources === 0) return undefined;
  const file = iptables ? firewall.rulesFile6 : firewall.rulesFile;
  const fileText = readRulesFile(file);
  const rulesFile = summarize6(
    file,
    iptables || fileText === undefined ? fileText : table6Of(fileText),
  );
  const kernel = summarize6(
    `${firewall.backend} kernel state (IPv6)`,
    await kernelRules6(config, runner),
  );
  // A half whose bytes are not those the archive vouches for agrees with nothing.
  const intact = !iptables || half === undefined || half.sha256 === vouched?.sha256;
  const agree =
    intact &&
    rulesFile.fingerprint === archive.fingerprint &&
    kernel.fingerprint === archive.fingerprint;
  return { rulesFile, archive, kernel, agree };
}
