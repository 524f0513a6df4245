/**
 * From configuration and eduVPN pools to the IPv6 text an apply would load (pure), the IPv6
 * counterpart of src/apply/plan.ts: rules.v6 merged byte for byte (iptables) or our
 * `table ip6` (nftables), loaded by the same apply as IPv4 (src/apply/apply.ts).
 */
import type { Backend } from '../archive/header.js';
import type { Config, Nat6 } from '../config.js';
import type { ClientPool } from '../eduvpn/pool.js';
import { mapClients6, mapPrefix6, type Map6, type PreviousAssignments6 } from '../mapping/map6.js';
import { parseCidr6, parseIpv6 } from '../net/ipv6.js';
import type { IptablesNat } from './iptables.js';
import { renderIp6tablesChains } from './iptables6.js';
import { renderNftTable6 } from './nftables6.js';
import { readPrevious6 } from './read-rules6.js';
import { canonicalNat, mergeIntoRulesFile } from './rules-file.js';

export interface Ruleset6Plan {
  readonly backend: Backend;
  readonly map: Map6;
  /** iptables: the merged rules.v6; nftables: our `table ip6` (for the one rules file). */
  readonly fileText: string;
  /** Where fileText goes: firewall.rulesFile6 or firewall.rulesFile. */
  readonly file: string;
  /** Our chains and jump (iptables backend only): what ip6tables-restore is given. */
  readonly iptables: IptablesNat | undefined;
  /** Our part alone, canonical (equal texts mean the same IPv6 NAT ruleset). */
  readonly ourPart: string;
}

/** The IPv6 map nat6 asks for; the config validated every address already. */
export function mapNat6(
  nat6: Nat6,
  pools: readonly ClientPool[],
  previous?: PreviousAssignments6,
): Map6 {
  if (nat6.mode === 'prefix') {
    const prefix = parseCidr6(nat6.publicPrefix, true) ?? { network: 0n, prefix: 128 };
    return mapPrefix6(pools, prefix, nat6.where);
  }
  return mapClients6(
    pools,
    {
      publicAddresses: nat6.publicAddresses.map((text) => parseIpv6(text) ?? 0n),
      portRange: nat6.portRange,
      excludePorts: nat6.excludePorts,
      portsPerClient: nat6.portsPerClient,
      minPortsPerClient: nat6.minPortsPerClient,
    },
    previous,
  );
}

/**
 * The IPv6 plan, or undefined without nat6. `currentText` is the IPv6 rules file as it is now
 * (iptables: rules.v6; nftables: the rules file), whose bindings the clients keep.
 */
export function planRuleset6(
  config: Config,
  pools: readonly ClientPool[],
  currentText: string | undefined,
): Ruleset6Plan | undefined {
  const { nat6 } = config;
  if (nat6 === undefined) return undefined;
  const previous = currentText === undefined ? undefined : readPrevious6(currentText);
  const map = mapNat6(nat6, pools, previous);
  const options = { outInterface: nat6.outInterface };
  const backend = config.firewall.backend;
  if (backend === 'nftables') {
    const fileText = renderNftTable6(map, { ...options, table: config.firewall.nftTable });
    return {
      backend,
      map,
      fileText,
      file: config.firewall.rulesFile,
      iptables: undefined,
      ourPart: fileText,
    };
  }
  const file = config.firewall.rulesFile6;
  const iptables = renderIp6tablesChains(map, options);
  const fileText = mergeIntoRulesFile(currentText, iptables, file);
  return { backend, map, fileText, file, iptables, ourPart: canonicalNat(iptables) };
}
