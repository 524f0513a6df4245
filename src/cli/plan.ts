/** `traceable-nat plan`: what an apply would set up, as a summary (no kernel, no writes). */
import { planFromDisk } from '../apply/apply.js';
import { clientCount } from '../eduvpn/pool.js';
import type { Assignment, PortMap } from '../mapping/types.js';
import { formatCidr4, formatIpv4 } from '../net/ipv4.js';
import type { Command } from './command.js';
import { discover } from './discovery.js';
import { EXIT } from './io.js';
import { renderTable } from './table.js';

function formatAssignment(assignment: Assignment): string {
  return `${formatIpv4(assignment.publicAddress)}:${assignment.block.first}-${assignment.block.last}`;
}

function poolRows(map: PortMap): { cells: string[]; json: Record<string, unknown> }[] {
  return [...new Set([...map.assignments()].map((a) => a.pool))].map((pool) => {
    const first = map.forward(pool.first);
    const last = map.forward(pool.last);
    const json = {
      profileId: pool.profileId,
      protocol: pool.protocol,
      process: pool.origin.process ?? null,
      subnet: formatCidr4(pool.subnet4),
      clients: clientCount(pool),
      firstClient: first ? { client: formatIpv4(first.client), to: formatAssignment(first) } : null,
      lastClient: last ? { client: formatIpv4(last.client), to: formatAssignment(last) } : null,
    };
    const cells = [
      pool.profileId,
      pool.protocol,
      pool.origin.process === undefined ? '-' : String(pool.origin.process),
      formatCidr4(pool.subnet4),
      String(clientCount(pool)),
      first ? `${formatIpv4(first.client)} -> ${formatAssignment(first)}` : '-',
      last ? `${formatIpv4(last.client)} -> ${formatAssignment(last)}` : '-',
    ];
    return { cells, json };
  });
}

export const planCommand: Command = {
  name: 'plan',
  summary: 'show the port blocks an apply would set up (changes nothing)',
  usage: '[--json]',
  options: { json: { type: 'boolean' } },
  run(context, options) {
    const config = context.config();
    const plan = planFromDisk(config, discover(config));
    const { map } = plan;
    const rows = poolRows(map);
    const summary = {
      source: plan.discovery.source,
      backend: plan.backend,
      clients: map.clientCount,
      publicAddresses: map.publicAddresses.map(formatIpv4),
      blockSize: map.blockSize,
      portsPerClient: config.nat.portsPerClient,
      blocksPerAddress: map.blocks.length,
      capacity: map.blocks.length * map.publicAddresses.length,
    };
    if (options.json) {
      context.io.stdout(
        JSON.stringify({ ...summary, pools: rows.map((row) => row.json) }, null, 2) + '\n',
      );
      return Promise.resolve(EXIT.ok);
    }
    context.io.stdout(
      `source: ${summary.source}, backend: ${summary.backend}\n` +
        `${summary.clients} clients on ${summary.publicAddresses.join(', ')}: ${summary.blockSize} ports per client ` +
        `(${summary.portsPerClient === 'auto' ? 'auto' : 'fixed'}), ${summary.blocksPerAddress} blocks per address, ` +
        `room for ${summary.capacity}\n\n` +
        renderTable(
          ['PROFILE', 'PROTOCOL', 'PROCESS', 'SUBNET', 'CLIENTS', 'FIRST CLIENT', 'LAST CLIENT'],
          rows.map((row) => row.cells),
        ),
    );
    return Promise.resolve(EXIT.ok);
  },
};
