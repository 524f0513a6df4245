/**
 * The IPv6 plan for the files on disk (what `plan`, `lookup`, `check` and `apply --dry-run`
 * show): the pure planRuleset6 fed with the IPv6 rules file as it is now.
 */
import { readRulesFile } from '../apply/snapshot.js';
import type { Config } from '../config.js';
import type { Discovery } from '../eduvpn/pool.js';
import { planRuleset6, type Ruleset6Plan } from '../render/ruleset6.js';

export function planIpv6FromDisk(config: Config, discovery: Discovery): Ruleset6Plan | undefined {
  if (config.nat6 === undefined) return undefined;
  const file =
    config.firewall.backend === 'iptables' ? config.firewall.rulesFile6 : config.firewall.rulesFile;
  return planRuleset6(config, discovery.pools, readRulesFile(file));
}

/** Whether any pool has an IPv6 range: its clients then leave translated but untraceable without nat6. */
export function hasIpv6Clients(discovery: Discovery): boolean {
  return discovery.pools.some((pool) => pool.subnet6 !== undefined);
}

export const IPV6_UNTRACEABLE =
  'IPv6 clients are translated by the firewall but not traceable; set nat6.publicAddresses or nat6.publicPrefix';
