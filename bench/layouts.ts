/**
 * The client pools the benchmark uses and the rule layouts it compares, rendered with the
 * project's own renderers. Every iptables layout starts POSTROUTING with a MASQUERADE rule for
 * the reference client only, so the reference takes the same short path in every layout and
 * its connects measure the machine's momentary speed, not the layout.
 */
import type { ClientPool } from '../src/eduvpn/pool.js';
import { mapClients } from '../src/mapping/map.js';
import type { PortMap } from '../src/mapping/types.js';
import { broadcastOf, formatIpv4, parseCidr4, parseIpv4 } from '../src/net/ipv4.js';
import {
  renderIptablesChains,
  renderLinearChain,
  ROOT_CHAIN,
  type IptablesNat,
} from '../src/render/iptables.js';
import { renderNftTable } from '../src/render/nftables.js';
import { REFERENCE_NET } from './netns.js';

export const OUT_INTERFACE = 'eth0';
/** The smallest block `auto` hands out by default; also what the /16 and /12 need. */
export const PORTS_PER_CLIENT = 64;
const PORT_RANGE = { first: 1024, last: 65535 };
const FIRST_PUBLIC_ADDRESS = parseIpv4('198.18.0.1') ?? 0;

export function wireguardPool(profileId: string, cidrText: string): ClientPool {
  const subnet4 = parseCidr4(cidrText, true);
  if (!subnet4) throw new Error(`${cidrText} is not a network`);
  return {
    profileId,
    protocol: 'wireguard',
    origin: { file: 'bench' },
    subnet4,
    first: subnet4.network + 2,
    last: broadcastOf(subnet4) - 1,
  };
}

export function clientCountOf(pools: readonly ClientPool[]): number {
  return pools.reduce((sum, pool) => sum + pool.last - pool.first + 1, 0);
}

/** Just enough public addresses (from 198.18.0.1) for `clients` at 64 ports each. */
export function publicAddressesFor(clients: number): string[] {
  const blocksPerAddress = Math.floor((PORT_RANGE.last - PORT_RANGE.first + 1) / PORTS_PER_CLIENT);
  const count = Math.max(1, Math.ceil(clients / blocksPerAddress));
  return Array.from({ length: count }, (_, i) => formatIpv4(FIRST_PUBLIC_ADDRESS + i));
}

/** The mapping an apply would make for these pools (auto block size, enough addresses). */
export function mapPools(pools: readonly ClientPool[]): PortMap {
  return mapClients(pools, {
    publicAddresses: publicAddressesFor(clientCountOf(pools)).map((text) => parseIpv4(text) ?? 0),
    portRange: PORT_RANGE,
    excludePorts: [],
    portsPerClient: 'auto',
    minPortsPerClient: PORTS_PER_CLIENT,
  });
}

export type LayoutKey =
  | 'masquerade'
  | 'linear'
  | 'tree'
  | 'nft'
  | 'tree-before'
  | 'tree-no-block'
  | 'rules-alone'
  | 'nft-no-block';

export interface ConnectLayout {
  readonly key: LayoutKey;
  /** `(a) plain MASQUERADE` ... as the issue names them. */
  readonly label: string;
  /** The program that loads the text: `iptables`, `iptables-legacy` or `nft`. */
  readonly tool: 'iptables' | 'iptables-legacy' | 'nft';
  /** A variant that takes the layout apart (issue 13): measured for the /16 only. */
  readonly variant?: true;
  /** The variant translates to the client's public address but keeps any port. */
  readonly anyPort?: true;
  render(map: PortMap): string;
}

/**
 * A whole `*nat` table for (ip6)iptables-restore: a MASQUERADE rule for the reference net, our
 * part, then the site's own MASQUERADE (`floorSource`: all of it, or eduVPN's IPv6 `fc00::/7`).
 */
export function natTable(
  nat: IptablesNat | undefined,
  referenceNet: string,
  floorSource?: string,
): string {
  const out = `-o ${OUT_INTERFACE}`;
  const reference = `-A POSTROUTING -s ${referenceNet} ${out} -j MASQUERADE`;
  const floor = `-A POSTROUTING${floorSource ? ` -s ${floorSource}` : ''} ${out} -j MASQUERADE`;
  const declarations = nat ? [...nat.chains.keys()].map((name) => `:${name} - [0:0]`) : [];
  const ours = nat ? [nat.jump, ...[...nat.chains.values()].flat()] : [];
  return ['*nat', ...declarations, reference, ...ours, floor, 'COMMIT', ''].join('\n');
}

/**
 * The site's own masquerade (priority srcnat, as eduVPN's) and the reference's, which runs
 * before ours (srcnat - 10): the first NAT decision wins.
 */
export function nftFloor(family: 'ip' | 'ip6', referenceNet: string, floorSource?: string): string {
  const oif = `oifname ${JSON.stringify(OUT_INTERFACE)}`;
  const floor = floorSource ? `${family} saddr ${floorSource} ${oif}` : oif;
  return [
    `table ${family} bench_reference {`,
    '\tchain postrouting {',
    '\t\ttype nat hook postrouting priority srcnat - 20; policy accept;',
    `\t\t${family} saddr ${referenceNet} ${oif} masquerade`,
    '\t}',
    '}',
    `table ${family} bench_floor {`,
    '\tchain postrouting {',
    '\t\ttype nat hook postrouting priority srcnat; policy accept;',
    `\t\t${floor} masquerade`,
    '\t}',
    '}',
    '',
  ].join('\n');
}

const options = { outInterface: OUT_INTERFACE };

/** The rules with `--to-source address:ports` cut to `--to-source address`. */
function withoutBlocks(text: string): string {
  return text.replace(/(--to-source [0-9.]+):[0-9-]+/g, '$1');
}

/**
 * The tcp and udp rules of the pool's first and last client, as the tree's leaves hold them,
 * straight in `TNAT`: the block without the walk. Other clients go to MASQUERADE.
 */
function firstAndLastAlone(map: PortMap): string {
  const rows = [...map.assignments()];
  const ends = [rows[0], rows[rows.length - 1]].map(
    (row) => `-s ${formatIpv4(row?.client ?? 0)}/32 `,
  );
  const tree = renderIptablesChains(map, options);
  const rules = [...tree.chains.values()]
    .flat()
    .filter((rule) => ends.some((end) => rule.includes(end)) && / -p (tcp|udp) /.test(rule))
    .map((rule) => rule.replace(/^-A \S+/, `-A ${ROOT_CHAIN}`));
  return natTable({ chains: new Map([[ROOT_CHAIN, rules]]), jump: tree.jump }, REFERENCE_NET);
}

/**
 * Issue 13's parts of the cost, for the /16: (c0) the walk down the tree with a SNAT that may
 * keep the client's port (no block), (c1) the block without the walk, (d0) the map lookup
 * without the block.
 */
/**
 * Each `--to-source address:first-last` cut to its first 32 ports: when every port of a range
 * is taken, the kernel may evict a closing entry only in the last 32 attempts of its search
 * (nf_nat_core.c, NF_NAT_HARDER_THRESH), so a range of 32 or fewer evicts at the first.
 */
function halfBlocks(text: string): string {
  return text.replace(
    /(--to-source [0-9.]+):(\d+)-\d+/g,
    (_match, target: string, first: string) => `${target}:${first}-${Number(first) + 31}`,
  );
}

/**
 * The tree as rendered before issue 13: `-o` on every rule of our chains and each client's tcp
 * and udp rules side by side, so the same run shows what the change bought.
 */
function asBeforeIssue13(text: string): string {
  const withOif = (line: string) =>
    line.replace(/^(-A TNAT\S*(?: -s \S+)?)( -[pj] )/, `$1 -o ${OUT_INTERFACE}$2`);
  const out: string[] = [];
  let leaf: { chain: string; tcp: string[]; udp: string[] } | undefined;
  const flush = () => {
    if (!leaf) return;
    leaf.tcp.forEach((rule, i) => out.push(rule, leaf?.udp[i] ?? ''));
    leaf = undefined;
  };
  for (const line of text.split('\n')) {
    const chain = /^-A (TNAT\S*) -s \S+\/32 -p (tcp|udp) -j SNAT /.exec(line);
    if (chain?.[1] !== undefined) {
      if (leaf?.chain !== chain[1]) flush();
      leaf ??= { chain: chain[1], tcp: [], udp: [] };
      (chain[2] === 'tcp' ? leaf.tcp : leaf.udp).push(withOif(line));
    } else if (leaf && /^-A TNAT\S* -p tcp -j RETURN$/.test(line)) {
      continue;
    } else {
      if (leaf && /^-A TNAT\S* -p udp -j RETURN$/.test(line)) {
        const chainName = leaf.chain;
        flush();
        out.push(withOif(`-A ${chainName} -p tcp -j RETURN`));
      } else flush();
      out.push(withOif(line));
    }
  }
  flush();
  return out.join('\n');
}

function variantLayouts(): ConnectLayout[] {
  const tree = (map: PortMap) => natTable(renderIptablesChains(map, options), REFERENCE_NET);
  return [
    {
      key: 'tree-before',
      label: '(c2) our tree as before issue 13 (-o on every rule, tcp and udp side by side)',
      tool: 'iptables',
      variant: true,
      render: (map) => asBeforeIssue13(tree(map)),
    },
    {
      key: 'tree-no-block',
      label: '(c0) our tree, no port block, iptables',
      tool: 'iptables',
      variant: true,
      anyPort: true,
      render: (map) => withoutBlocks(natTable(renderIptablesChains(map, options), REFERENCE_NET)),
    },
    {
      key: 'rules-alone',
      label: "(c1) the two clients' rules alone (block, no tree), iptables",
      tool: 'iptables',
      variant: true,
      render: firstAndLastAlone,
    },
    {
      key: 'rules-alone',
      label: "(c3) the two clients' rules alone with half their block (32 ports), iptables",
      tool: 'iptables',
      variant: true,
      render: (map) => halfBlocks(firstAndLastAlone(map)),
    },
    {
      key: 'nft-no-block',
      label: '(d0) our nftables map, no port block',
      tool: 'nft',
      variant: true,
      anyPort: true,
      render: (map) =>
        nftFloor('ip', REFERENCE_NET) +
        renderNftTable(map, options).replace('saddr map @clients', 'saddr map @others'),
    },
  ];
}

export function connectLayouts(legacy: boolean): ConnectLayout[] {
  const layouts: ConnectLayout[] = [
    {
      key: 'masquerade',
      label: '(a) plain MASQUERADE',
      tool: 'iptables',
      render: () => natTable(undefined, REFERENCE_NET),
    },
    {
      key: 'linear',
      label: '(b) linear chain, iptables',
      tool: 'iptables',
      render: (map) => natTable(renderLinearChain(map, options), REFERENCE_NET),
    },
    {
      key: 'tree',
      label: '(c) our tree, iptables',
      tool: 'iptables',
      render: (map) => natTable(renderIptablesChains(map, options), REFERENCE_NET),
    },
  ];
  if (legacy) {
    layouts.push(
      {
        key: 'linear',
        label: '(b) linear chain, iptables-legacy',
        tool: 'iptables-legacy',
        render: (map) => natTable(renderLinearChain(map, options), REFERENCE_NET),
      },
      {
        key: 'tree',
        label: '(c) our tree, iptables-legacy',
        tool: 'iptables-legacy',
        render: (map) => natTable(renderIptablesChains(map, options), REFERENCE_NET),
      },
    );
  }
  layouts.push({
    key: 'nft',
    label: '(d) our nftables map',
    tool: 'nft',
    render: (map) => nftFloor('ip', REFERENCE_NET) + renderNftTable(map, options),
  });
  return [...layouts, ...variantLayouts()];
}
