/** What a benchmark namespace's kernel holds, read with the ordinary tools. */
import type { Namespace } from './netns.js';

export type Backend = 'iptables' | 'nftables';

/** The whole ruleset, to compare before and after (iptables-save's date comment dropped). */
export function kernelListing(ns: Namespace, backend: Backend): string {
  if (backend === 'nftables') return ns.exec(['nft', '-a', 'list', 'ruleset']);
  return ns
    .exec(['iptables-save', '-c'])
    .split('\n')
    .filter((line) => !line.startsWith('#'))
    .join('\n');
}

/** Whether the kernel has a port block for `address` (our nft map or a SNAT rule). */
export function kernelHoldsClient(ns: Namespace, backend: Backend, address: string): boolean {
  if (backend === 'nftables') {
    const result = ns.exec(['nft', 'list', 'map', 'ip', 'traceable_nat', 'clients']);
    return new RegExp(`[\\s{]${address.replaceAll('.', '\\.')} :`).test(result);
  }
  return ns.exec(['iptables-save', '-t', 'nat']).includes(`-s ${address}/32 `);
}
