/**
 * IPv6 clients onto public IPv6 addresses, in one of two modes (issue 14):
 * - port blocks: the IPv4 scheme itself (src/mapping/map.ts: deterministic slots, spill-over,
 *   stable with the previous bindings), run over the twins' IPv4 numbering, since twins and
 *   IPv4 clients are one to one; public IPv6 addresses stand in the slot machinery as their
 *   position in nat6.publicAddresses.
 * - a prefix: each client keeps its host bits inside nat6.publicPrefix, as ip6tables NETMAP and
 *   nft `snat ip6 prefix to` compute it, so the public address alone names the client.
 */
import type { ClientPool } from '../eduvpn/pool.js';
import { TnatError, type Where } from '../errors.js';
import {
  cidr6Contains,
  cidr6Overlap,
  formatCidr6,
  formatIpv6,
  prefixMask6,
  type Cidr6,
} from '../net/ipv6.js';
import { mapClients, previousFromAssignments } from './map.js';
import { TwinIndex, type TwinSpan } from './twin6.js';
import type { Assignment, NatSettings, PortBlock, PortMap } from './types.js';

export interface Assignment6 {
  /** The IPv6 client address. */
  readonly client: bigint;
  /** Its IPv4 twin. */
  readonly twin: number;
  readonly pool: ClientPool;
  readonly publicAddress: bigint;
  /** Port-block mode: the client's block; prefix mode: undefined (every port is its own). */
  readonly block: PortBlock | undefined;
}

interface Map6Common {
  readonly clientCount: number;
  forward(client: bigint): Assignment6 | undefined;
  /** In prefix mode the port is not needed (and not looked at). */
  reverse(publicAddress: bigint, port?: number): Assignment6 | undefined;
  /** Every assignment, in ascending IPv6 client order. */
  assignments(): Iterable<Assignment6>;
}

export interface PortMap6 extends Map6Common {
  readonly mode: 'ports';
  readonly blockSize: number;
  readonly publicAddresses: readonly bigint[];
  /** The usable blocks of one public address, in hand-out order. */
  readonly blocks: readonly PortBlock[];
}

export interface PrefixMap6 extends Map6Common {
  readonly mode: 'prefix';
  readonly publicPrefix: Cidr6;
  /** Each client range (one NETMAP rule each) and the offsets from its network its clients have. */
  readonly clientRanges: readonly ClientRange6[];
}

/** The clients of one IPv6 client range: its network plus `first` to `last`. */
export interface ClientRange6 {
  readonly range: Cidr6;
  readonly first: bigint;
  readonly last: bigint;
}

/** A client range as an archive header records it: `fd42::/112 2-65534`. */
export function formatClientRange({ range, first, last }: ClientRange6): string {
  return `${formatCidr6(range)} ${String(first)}-${String(last)}`;
}

export type Map6 = PortMap6 | PrefixMap6;

export type NatSettings6 = Omit<NatSettings, 'publicAddresses' | 'configKey'> & {
  /** Public IPv6 addresses, in the order clients spill over to them. */
  readonly publicAddresses: readonly bigint[];
};

/** What the active IPv6 ruleset says, to keep every existing client where it is. */
export interface PreviousAssignments6 {
  readonly blockSize: number;
  readonly byClient: ReadonlyMap<
    bigint,
    { readonly publicAddress: bigint; readonly firstPort: number }
  >;
}

function byAddress(a: { client: bigint }, b: { client: bigint }): number {
  return a.client < b.client ? -1 : a.client > b.client ? 1 : 0;
}

function rejectPublicInClientRanges(twins: TwinIndex, publics: readonly Cidr6[], key: string) {
  for (const range of publics) {
    const span = twins.spans.find((candidate) => cidr6Overlap(candidate.subnet6, range));
    if (span) {
      throw new TnatError(
        'E_MAPPING',
        `${key} ${formatCidr6(range).replace(/\/128$/, '')} lies in the IPv6 client range ${formatCidr6(span.subnet6)} of profile "${span.pool.profileId}": use this server's public IPv6 address or prefix there`,
      );
    }
  }
}

/** Stands a public IPv6 address in for the slot machinery's numeric key: its position + 1. */
function proxyOf(position: number): number {
  // Positions + 1 read as IPv4 addresses lie in 0.0.0.0/8, never in a (private) client pool.
  return position + 1;
}

class SlotMap6 implements PortMap6 {
  readonly mode = 'ports';
  readonly blockSize: number;
  readonly blocks: readonly PortBlock[];
  readonly clientCount: number;

  constructor(
    private readonly twins: TwinIndex,
    private readonly map4: PortMap,
    /** The pool copies map4 knows (twins only) -> their spans. */
    private readonly spanOfCopy: ReadonlyMap<ClientPool, TwinSpan>,
    readonly publicAddresses: readonly bigint[],
  ) {
    this.blockSize = map4.blockSize;
    this.blocks = map4.blocks;
    this.clientCount = map4.clientCount;
  }

  private toAssignment6(assignment: Assignment | undefined): Assignment6 | undefined {
    if (!assignment) return undefined;
    const span = this.spanOfCopy.get(assignment.pool);
    const publicAddress = this.publicAddresses[assignment.publicAddress - 1];
    if (!span || publicAddress === undefined) return undefined;
    const client = span.subnet6.network + BigInt(assignment.client - span.pool.subnet4.network);
    return {
      client,
      twin: assignment.client,
      pool: span.pool,
      publicAddress,
      block: { first: assignment.firstPort, last: assignment.lastPort },
    };
  }

  forward(client: bigint): Assignment6 | undefined {
    const found = this.twins.clientOf(client);
    return found && this.toAssignment6(this.map4.forward(found.client4));
  }

  reverse(publicAddress: bigint, port?: number): Assignment6 | undefined {
    const position = this.publicAddresses.indexOf(publicAddress);
    if (position < 0 || port === undefined) return undefined;
    return this.toAssignment6(this.map4.reverse(proxyOf(position), port));
  }

  assignments(): Assignment6[] {
    const list: Assignment6[] = [];
    for (const assignment of this.map4.assignments()) {
      const converted = this.toAssignment6(assignment);
      if (converted) list.push(converted);
    }
    return list.sort(byAddress);
  }
}

/**
 * Maps the twin of every IPv4 client of `pools` (pool order, then address order) onto a port
 * block of a public IPv6 address. Throws E_MAPPING when IPv6 ranges overlap, a public address
 * lies in a client range, or the clients do not fit (naming the nat6 keys to change).
 */
export function mapClients6(
  pools: readonly ClientPool[],
  settings: NatSettings6,
  previous?: PreviousAssignments6,
): PortMap6 {
  const twins = new TwinIndex(pools);
  rejectPublicInClientRanges(
    twins,
    settings.publicAddresses.map((network) => ({ network, prefix: 128 })),
    'public address',
  );
  const spanOfCopy = new Map<ClientPool, TwinSpan>();
  const copies = twins.spans.map((span) => {
    const copy = { ...span.pool, first: span.first4, last: span.last4 };
    spanOfCopy.set(copy, span);
    return copy;
  });
  const positions = new Map(settings.publicAddresses.map((address, i) => [address, i]));
  const bindings: { client: number; publicAddress: number; firstPort: number }[] = [];
  previous?.byClient.forEach(({ publicAddress, firstPort }, client6) => {
    const found = twins.clientOf(client6);
    const position = positions.get(publicAddress);
    if (found && position !== undefined) {
      bindings.push({ client: found.client4, publicAddress: proxyOf(position), firstPort });
    }
  });
  const map4 = mapClients(
    copies,
    {
      ...settings,
      publicAddresses: settings.publicAddresses.map((_, i) => proxyOf(i)),
      configKey: 'nat6',
    },
    previous && previousFromAssignments(previous.blockSize, bindings),
  );
  return new SlotMap6(twins, map4, spanOfCopy, settings.publicAddresses);
}

const ALL_ONES = (1n << 128n) - 1n;

/** The host bits of a /`prefix`: what NETMAP keeps of the client's address. */
function hostMask6(prefix: number): bigint {
  return ~prefixMask6(prefix) & ALL_ONES;
}

/**
 * Whether NETMAP into a /`prefix` keeps the client ranges apart: each range, cut to its host
 * bits below `prefix`, must fit (its own prefix at least as long) and overlap no other.
 */
function keptApart(ranges: readonly Cidr6[], prefix: number): boolean {
  if (ranges.some((range) => range.prefix < prefix)) return false;
  const cut = ranges
    .map((range) => {
      const network = range.network & hostMask6(prefix);
      return { network, last: network | hostMask6(range.prefix) };
    })
    .sort((a, b) => (a.network < b.network ? -1 : a.network > b.network ? 1 : 0));
  return cut.every((range, i) => i === 0 || range.network > (cut[i - 1]?.last ?? -1n));
}

class NetmapPrefix6 implements PrefixMap6 {
  readonly mode = 'prefix';
  readonly clientCount: number;
  private readonly hostMask: bigint;

  readonly clientRanges: readonly ClientRange6[];

  constructor(
    private readonly twins: TwinIndex,
    readonly publicPrefix: Cidr6,
  ) {
    this.clientCount = twins.count;
    this.hostMask = hostMask6(publicPrefix.prefix);
    this.clientRanges = twins.spans.map(({ pool, subnet6, first4, last4 }) => ({
      range: subnet6,
      first: BigInt(first4 - pool.subnet4.network),
      last: BigInt(last4 - pool.subnet4.network),
    }));
  }

  private assignment(client: bigint, twin: number, pool: ClientPool): Assignment6 {
    const publicAddress = this.publicPrefix.network | (client & this.hostMask);
    return { client, twin, pool, publicAddress, block: undefined };
  }

  forward(client: bigint): Assignment6 | undefined {
    const found = this.twins.clientOf(client);
    return found && this.assignment(client, found.client4, found.span.pool);
  }

  reverse(publicAddress: bigint): Assignment6 | undefined {
    if (!cidr6Contains(this.publicPrefix, publicAddress)) return undefined;
    const host = publicAddress & this.hostMask;
    // Ranges are kept apart below the prefix (keptApart), so at most one can hold `host`.
    for (const { subnet6 } of this.twins.spans) {
      const client = (subnet6.network & ~this.hostMask) | host;
      if (cidr6Contains(subnet6, client)) return this.forward(client);
    }
    return undefined;
  }

  *assignments(): Generator<Assignment6> {
    const spans = [...this.twins.spans].sort((a, b) =>
      a.subnet6.network < b.subnet6.network ? -1 : 1,
    );
    for (const { pool, subnet6, first4, last4 } of spans) {
      for (let twin = first4; twin <= last4; twin++) {
        yield this.assignment(subnet6.network + BigInt(twin - pool.subnet4.network), twin, pool);
      }
    }
  }
}

/**
 * One public address per client inside `publicPrefix`, stateless: the client's host bits below
 * the public prefix length are kept (NETMAP), so this is one to one only when no two client
 * ranges share those bits; otherwise the error says which prefix length would do (`where`:
 * the config line).
 */
export function mapPrefix6(
  pools: readonly ClientPool[],
  publicPrefix: Cidr6,
  where?: Where,
): PrefixMap6 {
  const twins = new TwinIndex(pools);
  rejectPublicInClientRanges(twins, [publicPrefix], 'nat6.publicPrefix');
  const ranges = twins.spans.map((span) => span.subnet6);
  if (!keptApart(ranges, publicPrefix.prefix)) {
    let needed = publicPrefix.prefix;
    while (needed > 0 && !keptApart(ranges, needed)) needed--;
    const listed = ranges.map(formatCidr6);
    const shown = listed.length > 4 ? `${listed.slice(0, 4).join(', ')}, ...` : listed.join(', ');
    throw new TnatError(
      'E_CONFIG',
      `nat6.publicPrefix ${formatCidr6(publicPrefix)} is too small for the IPv6 client ranges ${shown}: ` +
        `a /${publicPrefix.prefix} keeps only the last ${128 - publicPrefix.prefix} bits of a client address, and these ranges share them, so two clients would get one public address; ` +
        `use a /${needed} or larger prefix (or give each range its own subnet bits)`,
      where ? { where } : {},
    );
  }
  return new NetmapPrefix6(twins, publicPrefix);
}

export function formatAssignment6(assignment: Assignment6): string {
  const address = formatIpv6(assignment.publicAddress);
  const { block } = assignment;
  return block ? `[${address}]:${block.first}-${block.last}` : address;
}

/** The bindings of a port-block map, as the next mapping's stability input. */
export function previousFromMap6(map: PortMap6): PreviousAssignments6 {
  const byClient = new Map<bigint, { publicAddress: bigint; firstPort: number }>();
  for (const { client, publicAddress, block } of map.assignments()) {
    if (block) byClient.set(client, { publicAddress, firstPort: block.first });
  }
  return { blockSize: map.blockSize, byClient };
}

/**
 * PreviousAssignments6 from bindings read back from a ruleset: the block size is the most
 * common one, and a client listed twice keeps its first entry (the first matching rule wins).
 */
export function previousFromBindings6(
  bindings: readonly {
    client: bigint;
    publicAddress: bigint;
    firstPort: number;
    lastPort: number;
  }[],
): PreviousAssignments6 | undefined {
  if (bindings.length === 0) return undefined;
  const sizes = new Map<number, number>();
  for (const { firstPort, lastPort } of bindings) {
    const size = lastPort - firstPort + 1;
    sizes.set(size, (sizes.get(size) ?? 0) + 1);
  }
  const blockSize = [...sizes].sort((a, b) => b[1] - a[1] || b[0] - a[0])[0]?.[0] ?? 0;
  const byClient = new Map<bigint, { publicAddress: bigint; firstPort: number }>();
  for (const { client, publicAddress, firstPort } of bindings) {
    if (!byClient.has(client)) byClient.set(client, { publicAddress, firstPort });
  }
  return { blockSize, byClient };
}
