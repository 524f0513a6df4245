/**
 * From configuration and eduVPN pools to the exact text an apply would load (pure). The clients
 * of the ruleset that is active now keep their blocks (stability): they are read back from the
 * current rules file, or from the newest archive when the file has none of our rules.
 */
import type { Config } from '../config.js';
import type { Backend } from '../archive/header.js';
import type { Discovery } from '../eduvpn/pool.js';
import { assignmentColumns } from '../mapping/columns.js';
import { mapClients, previousFromAssignments } from '../mapping/map.js';
import type { NatSettings, PortMap, PreviousAssignments } from '../mapping/types.js';
import { parseIpv4 } from '../net/ipv4.js';
import {
  chainsFromLayout,
  renderIptablesChains,
  rulesRunIn,
  type ChainLayout,
  type IptablesNat,
} from '../render/iptables.js';
import { renderNftTableReusing, type NftLayout, type NftRender } from '../render/nftables.js';
import { readAssignments, type ReadRules } from '../render/read-rules.js';
import {
  canonicalNat,
  extractNatPart,
  NO_NAT,
  prepareMerge,
  type MergeTemplate,
} from '../render/rules-file.js';
import { planRuleset6, type Ruleset6Plan } from '../render/ruleset6.js';

export interface RulesetPlan {
  readonly backend: Backend;
  readonly discovery: Discovery;
  readonly map: PortMap;
  /** The complete rules file as it should be (iptables: the merged rules.v4; nftables: our table). */
  readonly fileText: string;
  /** Our chains and jump (iptables backend only). */
  readonly iptables: IptablesNat | undefined;
  /** Where our table's map elements are in fileText (nftables backend only), for reuse. */
  readonly nftLayout?: NftLayout | undefined;
  /** The rules file without our part, ready to take a new one (iptables backend only). */
  readonly mergeTemplate: MergeTemplate | undefined;
  /** Our part alone, in a canonical form: equal texts mean the same NAT ruleset. */
  readonly ourPart: string;
  /**
   * The IPv6 side (nat6), or undefined without nat6. nftables: its `table ip6` is already part
   * of fileText and ourPart (one rules file, one transaction, one archive); iptables: rules.v6,
   * loaded by ip6tables-restore and archived as the rules.v6 half of the activation.
   */
  readonly ipv6: Ruleset6Plan | undefined;
  /**
   * iptables without nat6 while rules.v6 still holds our part (nat6 was removed): rules.v6 as
   * it must become, without it; the apply also takes our IPv6 chains out of the kernel.
   */
  readonly ipv6Removal: { readonly file: string; readonly fileText: string } | undefined;
}

export function natSettings(config: Config): NatSettings {
  return {
    publicAddresses: config.nat.publicAddresses.map((text) => parseIpv4(text) ?? 0),
    portRange: config.nat.portRange,
    excludePorts: config.nat.excludePorts,
    portsPerClient: config.nat.portsPerClient,
    minPortsPerClient: config.nat.minPortsPerClient,
  };
}

/** A ruleset's bindings as the mapping's stability input; undefined when it has none. */
function previousOf(read: ReadRules): PreviousAssignments | undefined {
  return read.assignments.length > 0
    ? previousFromAssignments(read.blockSize, read.assignments)
    : undefined;
}

/** The assignments the first of the ruleset texts that has any holds. */
function previousFrom(...texts: (string | undefined)[]): PreviousAssignments | undefined {
  for (const text of texts) {
    const previous = text === undefined ? undefined : previousOf(readAssignments(text));
    if (previous) return previous;
  }
  return undefined;
}

/** Our part of a ruleset text in canonical form (see RulesetPlan.ourPart). */
export function ourPartOf(text: string, backend: Backend, file = '<rules>'): string {
  return backend === 'nftables' ? text : canonicalNat(extractNatPart(text, file));
}

export interface CurrentState {
  /** The rules file as it is now (undefined: it does not exist). */
  readonly rulesText: string | undefined;
  /** The body of the newest archive, if any. */
  readonly archiveBody: string | undefined;
  /** The bindings in force, when already known (saves reading them back from the texts). */
  readonly previous?: PreviousAssignments | undefined;
  /**
   * An earlier render of our chains (the daemon's last plan), whose unchanged subtrees the
   * render takes instead of writing them again; any render serves, the result is the same.
   */
  readonly previousRender?: IptablesNat | undefined;
  /** The same for nftables: an earlier plan's text and where its elements are. */
  readonly previousNft?: NftRender | undefined;
  /** The merge template of rulesText, when already known (saves parsing it again). */
  readonly mergeTemplate?: MergeTemplate | undefined;
  /**
   * iptables with nat6: rules.v6 as it is now, whose IPv6 bindings the clients keep (the
   * nftables rules file holds both families, so there rulesText serves). Undefined: none.
   */
  readonly rulesText6?: string | undefined;
}

/** The bindings of a plan, as the next plan's stability input. */
export function previousFromMap(map: PortMap): PreviousAssignments {
  return { blockSize: map.blockSize, bindings: assignmentColumns(map) };
}

/** rules.v6 without our part, when it has one (see RulesetPlan.ipv6Removal). */
function removal6(text: string | undefined, file: string): RulesetPlan['ipv6Removal'] {
  if (text === undefined || extractNatPart(text, file).chains.size === 0) return undefined;
  return { file, fileText: prepareMerge(text, file).render(NO_NAT) };
}

export function planRuleset(
  config: Config,
  discovery: Discovery,
  current: CurrentState,
): RulesetPlan {
  const backend = config.firewall.backend;
  const map = mapClients(
    discovery.pools,
    natSettings(config),
    // The newest archive first: it is the active ruleset, which the kernel holds; a rules file
    // that differs from it (an older copy put back, a kill between the archive's commit and the
    // file's rename) must not move the clients it placed. The file serves when there is no
    // archive or it holds no binding (the original script's rules, before our first apply).
    current.previous ?? previousFrom(current.archiveBody, current.rulesText),
  );
  const outInterface = config.nat.outInterface;
  const ipv6 = planRuleset6(
    config,
    discovery.pools,
    backend === 'nftables' ? current.rulesText : current.rulesText6,
  );
  if (backend === 'nftables') {
    // One rules file and one transaction for both families: ours, so nothing else to keep.
    const table = renderNftTableReusing(
      map,
      { outInterface, table: config.firewall.nftTable },
      current.previousNft,
    );
    const fileText = table.text + (ipv6?.fileText ?? '');
    return {
      backend,
      discovery,
      map,
      fileText,
      iptables: undefined,
      nftLayout: table.layout,
      mergeTemplate: undefined,
      ourPart: fileText,
      ipv6,
      ipv6Removal: undefined,
    };
  }
  const iptables = renderIptablesChains(map, { outInterface }, current.previousRender);
  const mergeTemplate =
    current.mergeTemplate ?? prepareMerge(current.rulesText, config.firewall.rulesFile);
  return iptablesPlan({
    discovery,
    map,
    fileText: mergeTemplate.render(iptables),
    iptables,
    mergeTemplate,
    ipv6,
    ipv6Removal: ipv6 ? undefined : removal6(current.rulesText6, config.firewall.rulesFile6),
  });
}

/** An iptables plan of these parts, with our part in its canonical form built when asked. */
function iptablesPlan(
  parts: Omit<RulesetPlan, 'backend' | 'iptables' | 'ourPart'> & { iptables: IptablesNat },
): RulesetPlan {
  const { iptables } = parts;
  let ourPart: string | undefined;
  return {
    ...parts,
    backend: 'iptables',
    // The merge writes our chains in this order, so this equals ourPartOf(fileText) unparsed.
    // Built when asked: only a rules file edited since its archive needs it (a /16: 70 ms).
    get ourPart() {
      return (ourPart ??= canonicalNat(iptables));
    },
  };
}

/**
 * A plan without its rules text: what the daemon keeps between applies while the rules file
 * holds that text (a /16: 14.5 MB for iptables, 5 MB for nftables, and for iptables some
 * 6 MB more in the lines of its chains), to get the plan back from the file's text on the next
 * apply (planWithText). Everything but the text stays: the map, the merge template, the
 * render's layout, and where the text holds our rules.
 */
export interface TextlessPlan {
  /** The plan's other fields (the IPv6 side keeps its own text). */
  readonly parts: Omit<RulesetPlan, 'fileText' | 'iptables' | 'ourPart'>;
  /** fileText's length: a text of another length is not the plan's. */
  readonly length: number;
  /** iptables: the render's layout without its pieces, its jump, where its rules start. */
  readonly iptables?: {
    readonly layout: ChainLayout;
    readonly jump: string;
    readonly at: number;
  };
}

/** The textless plan each plan planWithText gave came from: keeping it again costs nothing. */
const textlessOrigin = new WeakMap<RulesetPlan, TextlessPlan>();

/**
 * `plan` without its text (see TextlessPlan), when `flatText` is its text and, for iptables,
 * its render has a layout and the text holds its rules as one run; else undefined.
 */
export function textlessPlan(plan: RulesetPlan, flatText: string): TextlessPlan | undefined {
  if (flatText !== plan.fileText) return undefined;
  const known = textlessOrigin.get(plan);
  if (known !== undefined) return known;
  const parts = {
    backend: plan.backend,
    discovery: plan.discovery,
    map: plan.map,
    nftLayout: plan.nftLayout,
    mergeTemplate: plan.mergeTemplate,
    ipv6: plan.ipv6,
    ipv6Removal: plan.ipv6Removal,
  };
  const nat = plan.iptables;
  if (nat === undefined) return { parts, length: flatText.length };
  const at = rulesRunIn(nat, flatText);
  if (at === undefined || nat.layout === undefined) return undefined;
  const layout = { ...nat.layout, pieces: [] };
  return { parts, length: flatText.length, iptables: { layout, jump: nat.jump, at } };
}

/**
 * The plan `textless` was made from, given its text (the rules file's, while it is still the
 * file that apply wrote); undefined when `text` cannot be it (another length, our rules not
 * where they were).
 */
export function planWithText(textless: TextlessPlan, text: string): RulesetPlan | undefined {
  if (text.length !== textless.length) return undefined;
  const { parts } = textless;
  let plan: RulesetPlan;
  if (textless.iptables === undefined) {
    if (parts.backend !== 'nftables') return undefined;
    plan = { ...parts, fileText: text, iptables: undefined, ourPart: text };
  } else {
    const { layout, jump, at } = textless.iptables;
    const iptables = chainsFromLayout(layout, jump, text, at);
    if (iptables === undefined) return undefined;
    plan = iptablesPlan({ ...parts, fileText: text, iptables });
  }
  textlessOrigin.set(plan, textless);
  return plan;
}
