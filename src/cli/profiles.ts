/** `traceable-nat profiles`: which client pools this host has, read from the eduVPN files. */
import { clientCount, type ClientPool, type Discovery } from '../eduvpn/pool.js';
import { formatCidr4, formatIpv4 } from '../net/ipv4.js';
import type { Command } from './command.js';
import { discover } from './discovery.js';
import { EXIT } from './io.js';
import { renderTable } from './table.js';

function poolJson(pool: ClientPool): Record<string, unknown> {
  return {
    profileId: pool.profileId,
    protocol: pool.protocol,
    file: pool.origin.file,
    line: pool.origin.line ?? null,
    process: pool.origin.process ?? null,
    subnet: formatCidr4(pool.subnet4),
    firstClient: formatIpv4(pool.first),
    lastClient: formatIpv4(pool.last),
    clients: clientCount(pool),
    subnet6: pool.subnet6 ?? null,
  };
}

function discoveryJson(discovery: Discovery): Record<string, unknown> {
  return {
    source: discovery.source,
    files: discovery.files,
    clients: discovery.pools.reduce((sum, pool) => sum + clientCount(pool), 0),
    pools: discovery.pools.map(poolJson),
  };
}

function renderPools(discovery: Discovery): string {
  const rows = discovery.pools.map((pool) => [
    pool.profileId,
    pool.protocol,
    pool.origin.process === undefined ? '-' : String(pool.origin.process),
    formatCidr4(pool.subnet4),
    formatIpv4(pool.first),
    formatIpv4(pool.last),
    String(clientCount(pool)),
    pool.subnet6 ?? '-',
    `${pool.origin.file}${pool.origin.line === undefined ? '' : `:${pool.origin.line}`}`,
  ]);
  const total = discovery.pools.reduce((sum, pool) => sum + clientCount(pool), 0);
  return (
    `source: ${discovery.source} (${discovery.files.join(', ')})\n\n` +
    renderTable(
      [
        'PROFILE',
        'PROTOCOL',
        'PROCESS',
        'SUBNET',
        'FIRST CLIENT',
        'LAST CLIENT',
        'CLIENTS',
        'SUBNET6',
        'FROM',
      ],
      rows,
    ) +
    `\n${total} clients in ${discovery.pools.length} pools\n`
  );
}

export const profilesCommand: Command = {
  name: 'profiles',
  options: { json: { type: 'boolean' } },
  run(context, options) {
    const discovery = discover(context.config());
    context.io.stdout(
      options.json
        ? JSON.stringify(discoveryJson(discovery), null, 2) + '\n'
        : renderPools(discovery),
    );
    return Promise.resolve(EXIT.ok);
  },
};
