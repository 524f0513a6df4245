/**
 * The renderers as they were written before issue 13 made them write bytes: one template
 * string per line, arrays of Assignment objects, joined at the end. Slow and plain, so that the
 * fast renderers can be checked against them on random maps.
 */
import type { Assignment, PortBlock, PortMap } from '../../src/mapping/types.js';
import { formatIpv4, prefixMask } from '../../src/net/ipv4.js';
import { groupRuns } from '../../src/render/group-runs.js';
import { CHAIN_PREFIX, renderJump, ROOT_CHAIN } from '../../src/render/iptables.js';
import type { IptablesNat, IptablesOptions } from '../../src/render/iptables.js';
import { DEFAULT_NFT_TABLE, type NftOptions } from '../../src/render/nftables.js';

const LEAF_CLIENTS = 16;
const LEVEL_BITS = 4;

function formatPortBlock(block: PortBlock): string {
  return block.first === block.last ? `${block.first}` : `${block.first}-${block.last}`;
}

function sortedAssignments(map: PortMap): Assignment[] {
  return [...map.assignments()].sort((a, b) => a.client - b.client);
}

function leafRules(chain: string, clients: readonly Assignment[], scoped: boolean): string[] {
  const rules: string[] = [];
  if (clients.length === 0) return rules;
  const head = `-A ${chain}`;
  const sources = clients.map(({ client }) => `-s ${formatIpv4(client)}/32`);
  for (const protocol of ['tcp', 'udp']) {
    clients.forEach(({ publicAddress, firstPort, lastPort }, i) => {
      const ports = formatPortBlock({ first: firstPort, last: lastPort });
      const target = `-j SNAT --to-source ${formatIpv4(publicAddress)}:${ports}`;
      rules.push(`${head} ${sources[i] ?? ''} -p ${protocol} ${target}`);
    });
    rules.push(`${head} -p ${protocol} -j RETURN`);
  }
  const shared = clients[0]?.publicAddress;
  if (scoped && clients.every(({ publicAddress }) => publicAddress === shared)) {
    rules.push(`${head} -j SNAT --to-source ${formatIpv4(shared ?? 0)}`);
  } else {
    clients.forEach(({ publicAddress }, i) => {
      rules.push(`${head} ${sources[i] ?? ''} -j SNAT --to-source ${formatIpv4(publicAddress)}`);
    });
  }
  return rules;
}

function commonLevel(low: number, high: number): number {
  const bits = Math.clz32((low ^ high) >>> 0);
  return bits === 32 ? 32 : bits - (bits % LEVEL_BITS);
}

function renderSubtree(
  chains: Map<string, string[]>,
  chain: string,
  clients: readonly Assignment[],
  scoped: boolean,
): void {
  const first = clients[0]?.client ?? 0;
  const last = clients.at(-1)?.client ?? 0;
  if (clients.length <= LEAF_CLIENTS || first === last) {
    chains.set(chain, leafRules(chain, clients, scoped));
    return;
  }
  const rules: string[] = [];
  chains.set(chain, rules);
  const shift = 32 - (commonLevel(first, last) + LEVEL_BITS);
  for (const group of groupRuns(clients, (assignment) => assignment.client >>> shift)) {
    const low = group[0]?.client ?? 0;
    const prefix = commonLevel(low, group.at(-1)?.client ?? 0);
    const network = formatIpv4((low & prefixMask(prefix)) >>> 0);
    const child = `${CHAIN_PREFIX}-${network}/${prefix}`;
    rules.push(`-A ${chain} -s ${network}/${prefix} -j ${child}`);
    renderSubtree(chains, child, group, true);
  }
}

export function referenceIptablesChains(map: PortMap, options: IptablesOptions): IptablesNat {
  const chains = new Map<string, string[]>();
  renderSubtree(chains, ROOT_CHAIN, sortedAssignments(map), false);
  return { chains, jump: renderJump(options) };
}

export function referenceLinearChain(map: PortMap, options: IptablesOptions): IptablesNat {
  const rules = leafRules(ROOT_CHAIN, sortedAssignments(map), false);
  return { chains: new Map([[ROOT_CHAIN, rules]]), jump: renderJump(options) };
}

function mapBlock(name: string, type: string, elements: readonly string[]): string[] {
  const lines = [`\tmap ${name} {`, `\t\ttype ${type}`];
  if (elements.length > 0) {
    lines.push('\t\telements = {', ...elements.map((element) => `\t\t\t${element},`), '\t\t}');
  }
  lines.push('\t}');
  return lines;
}

export function referenceNftTable(map: PortMap, options: NftOptions): string {
  const table = options.table ?? DEFAULT_NFT_TABLE;
  const entries = sortedAssignments(map);
  const pair = ({ client, publicAddress }: Assignment) =>
    `${formatIpv4(client)} : ${formatIpv4(publicAddress)}`;
  const oif = JSON.stringify(options.outInterface);
  const clients = entries.map((entry) => `${pair(entry)} . ${entry.firstPort}-${entry.lastPort}`);
  return [
    `# traceable-nat: a fixed source port block per VPN client (table ip ${table}, replaced whole)`,
    `table ip ${table}`,
    `delete table ip ${table}`,
    `table ip ${table} {`,
    ...mapBlock('clients', 'ipv4_addr : interval ipv4_addr . inet_service', clients),
    ...mapBlock('others', 'ipv4_addr : ipv4_addr', entries.map(pair)),
    '\tchain postrouting {',
    '\t\ttype nat hook postrouting priority srcnat - 10; policy accept;',
    `\t\toifname ${oif} meta l4proto { tcp, udp } snat ip to ip saddr map @clients`,
    `\t\toifname ${oif} meta l4proto != { tcp, udp } snat ip to ip saddr map @others`,
    '\t}',
    '}',
    '',
  ].join('\n');
}
