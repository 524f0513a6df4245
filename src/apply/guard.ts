/**
 * The guard against applying a half-written or emptied eduVPN file. Such a file is still valid
 * (an empty `ProfileList`, a wg0.conf cut after `[Interface]`), so it reads fine and would
 * remove every rule of the clients it lost, and reset their connections. An apply that would
 * remove more than half of the active clients, or every client of a VPN protocol that had some,
 * is refused unless `--force` says it is meant (or `firewall.removalGuard: false`).
 */
import { clientCount, type Discovery, type VpnProtocol } from '../eduvpn/pool.js';
import { walkBindings, type Bindings } from '../mapping/bindings.js';
import { assignmentColumns } from '../mapping/columns.js';
import type { PortMap } from '../mapping/types.js';

export interface ActiveClients {
  /** The bindings the kernel holds now (empty after a flush or before the first apply). */
  readonly held: Bindings;
  /** Client counts of the newest archive, from the state file, when known. */
  readonly anchored:
    | { readonly clients: number; readonly clientsByProtocol: Readonly<Record<string, number>> }
    | undefined;
}

export function clientsByProtocol(discovery: Discovery): Record<VpnProtocol, number> {
  const counts: Record<VpnProtocol, number> = { openvpn: 0, wireguard: 0 };
  for (const pool of discovery.pools) counts[pool.protocol] += clientCount(pool);
  return counts;
}

const PROTOCOL_NAMES: Readonly<Record<string, string>> = {
  openvpn: 'OpenVPN',
  wireguard: 'WireGuard',
};

/** Why this plan looks like the product of a broken eduVPN file, or undefined. */
export function removalProblem(
  active: ActiveClients,
  map: PortMap,
  discovery: Discovery,
): string | undefined {
  let before = active.held.count;
  let removed = 0;
  walkBindings(active.held, assignmentColumns(map), { gone: () => removed++ });
  if (before === 0 && active.anchored !== undefined) {
    // The kernel lost our rules (a flush, a reboot before the rules file was loaded): the
    // newest archive says what was active.
    before = active.anchored.clients;
    removed = Math.max(0, before - map.clientCount);
  }
  if (before > 0 && removed * 2 > before) {
    return `this apply would remove ${removed} of the ${before} active clients (more than half)`;
  }
  const planned = clientsByProtocol(discovery);
  for (const [protocol, count] of Object.entries(active.anchored?.clientsByProtocol ?? {})) {
    if (count > 0 && planned[protocol as VpnProtocol] === 0) {
      return `this apply would remove all ${count} ${PROTOCOL_NAMES[protocol] ?? protocol} clients`;
    }
  }
  return undefined;
}
