/** `traceable-nat plan`: what an apply would set up, as a summary (no kernel, no writes). */
import { planFromDisk } from '../apply/apply.js';
import { clientCount, type ClientPool } from '../eduvpn/pool.js';
import type { Assignment, PortMap } from '../mapping/types.js';
import { formatAssignment6, type Assignment6, type Map6 } from '../mapping/map6.js';
import { formatCidr4, formatIpv4 } from '../net/ipv4.js';
import { formatCidr6, formatIpv6 } from '../net/ipv6.js';
import type { Command } from './command.js';
import { discover } from './discovery.js';
import { EXIT } from './io.js';
import { hasIpv6Clients, IPV6_UNTRACEABLE, planIpv6FromDisk } from './ipv6-plan.js';
import { renderTable } from './table.js';

function formatAssignment(assignment: Assignment): string {
  return `${formatIpv4(assignment.publicAddress)}:${assignment.firstPort}-${assignment.lastPort}`;
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

/** One row per pool with IPv6 clients: its first and last twin and where they go. */
function poolRows6(
  map: Map6,
  pools: readonly ClientPool[],
): { cells: string[]; json: Record<string, unknown> }[] {
  const byPool = new Map<
    string,
    { first: Assignment6; last: Assignment6; count: number; pool: Assignment6['pool'] }
  >();
  for (const assignment of map.assignments()) {
    const key = `${assignment.pool.profileId} ${assignment.pool.subnet6 ?? ''}`;
    const row = byPool.get(key);
    if (row) {
      row.last = assignment;
      row.count++;
    } else {
      byPool.set(key, { first: assignment, last: assignment, count: 1, pool: assignment.pool });
    }
  }
  // Pools in hand-out order, as the IPv4 table lists them.
  const rows = [...byPool.values()].sort((a, b) => pools.indexOf(a.pool) - pools.indexOf(b.pool));
  return rows.map(({ pool, first, last, count }) => {
    const client = (a: Assignment6) => `${formatIpv6(a.client)} (${formatIpv4(a.twin)})`;
    const json = {
      profileId: pool.profileId,
      protocol: pool.protocol,
      process: pool.origin.process ?? null,
      subnet6: pool.subnet6 ?? null,
      clients: count,
      firstClient: {
        client: formatIpv6(first.client),
        twin: formatIpv4(first.twin),
        to: formatAssignment6(first),
      },
      lastClient: {
        client: formatIpv6(last.client),
        twin: formatIpv4(last.twin),
        to: formatAssignment6(last),
      },
    };
    const cells = [
      pool.profileId,
      pool.protocol,
      pool.origin.process === undefined ? '-' : String(pool.origin.process),
      pool.subnet6 ?? '-',
      String(count),
      `${client(first)} -> ${formatAssignment6(first)}`,
      `${client(last)} -> ${formatAssignment6(last)}`,
    ];
    return { cells, json };
  });
}

function summary6(map: Map6): Record<string, unknown> {
  if (map.mode === 'prefix') {
    return {
      mode: 'prefix',
      clients: map.clientCount,
      publicPrefix: formatCidr6(map.publicPrefix),
    };
  }
  return {
    mode: 'ports',
    clients: map.clientCount,
    publicAddresses: map.publicAddresses.map(formatIpv6),
    blockSize: map.blockSize,
    blocksPerAddress: map.blocks.length,
    capacity: map.blocks.length * map.publicAddresses.length,
  };
}

function summaryLine6(map: Map6): string {
  if (map.mode === 'prefix') {
    return `IPv6 (nat6): ${map.clientCount} clients, one public address each in ${formatCidr6(map.publicPrefix)} (all ports)`;
  }
  return (
    `IPv6 (nat6): ${map.clientCount} clients on ${map.publicAddresses.map(formatIpv6).join(', ')}: ` +
    `${map.blockSize} ports per client, ${map.blocks.length} blocks per address, room for ${map.blocks.length * map.publicAddresses.length}`
  );
}

function ipv6Text(
  map: Map6 | undefined,
  rows: readonly { cells: string[] }[],
  hasIpv6: boolean,
): string {
  if (!map)
    return hasIpv6
      ? `\nIPv6: not translated by traceable-nat (no nat6): ${IPV6_UNTRACEABLE}\n`
      : '';
  return (
    `\n${summaryLine6(map)}\n\n` +
    renderTable(
      [
        'PROFILE',
        'PROTOCOL',
        'PROCESS',
        'SUBNET6',
        'CLIENTS',
        'FIRST CLIENT (TWIN)',
        'LAST CLIENT (TWIN)',
      ],
      rows.map((row) => row.cells),
    )
  );
}

export const planCommand: Command = {
  name: 'plan',
  options: { json: { type: 'boolean' } },
  run(context, options) {
    const config = context.config();
    const discovery = discover(config);
    const plan = planFromDisk(config, discovery);
    const plan6 = planIpv6FromDisk(config, discovery);
    const rows6 = plan6 ? poolRows6(plan6.map, discovery.pools) : [];
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
        JSON.stringify(
          {
            ...summary,
            pools: rows.map((row) => row.json),
            ipv6: plan6 ? { ...summary6(plan6.map), pools: rows6.map((row) => row.json) } : null,
          },
          null,
          2,
        ) + '\n',
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
        ) +
        ipv6Text(plan6?.map, rows6, hasIpv6Clients(discovery)),
    );
    return Promise.resolve(EXIT.ok);
  },
};
