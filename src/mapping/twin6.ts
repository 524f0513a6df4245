/**
 * The IPv6 twin of each IPv4 client: the address at the same offset from the pool's IPv6
 * network (README "IPv6 twins"). WireGuard: vpn-user-portal ConnectionManager::getIpAddress
 * pairs entry k of Ip::clientIpListFour and Ip::clientIpListSix, both network + 2 + k. OpenVPN:
 * helper.c puts the pool of `server-ipv6 <net>/112` at network + 2 and pool.c hands out entry k
 * as IPv4 base + k and IPv6 base + k. So twin = network6 + (client4 - network4) for both.
 */
import type { ClientPool } from '../eduvpn/pool.js';
import { formatWhere, TnatError } from '../errors.js';
import { formatCidr4 } from '../net/ipv4.js';
import { cidr6Overlap, formatCidr6, parseCidr6, type Cidr6 } from '../net/ipv6.js';

/** A pool whose clients have IPv6 twins, and the IPv4 clients that do. */
export interface TwinSpan {
  readonly pool: ClientPool;
  readonly subnet6: Cidr6;
  /** The IPv4 clients first4..last4 have twins (the IPv6 range may be the smaller one). */
  readonly first4: number;
  readonly last4: number;
}

/**
 * The highest offset from network6 a twin may have: Ip::clientIpListSix stops at
 * 2^(128-prefix) - 3 entries from network + 2 (so one before the last address); OpenVPN's pool
 * (pool.c, ifconfig_pool_init) runs to the last address of the /112.
 */
function highestOffset(pool: ClientPool, subnet6: Cidr6): bigint {
  const size = 1n << BigInt(128 - subnet6.prefix);
  return pool.protocol === 'openvpn' ? size - 1n : size - 2n;
}

function spanOf(pool: ClientPool): TwinSpan | undefined {
  if (pool.subnet6 === undefined) return undefined;
  const subnet6 = parseCidr6(pool.subnet6);
  if (!subnet6) return undefined;
  const highest = highestOffset(pool, subnet6);
  const lastOffset4 = BigInt(pool.last - pool.subnet4.network);
  const last4 = pool.subnet4.network + Number(highest < lastOffset4 ? highest : lastOffset4);
  if (last4 < pool.first) return undefined;
  return { pool, subnet6, first4: pool.first, last4 };
}

function describe(span: TwinSpan): string {
  const { pool } = span;
  const where = formatWhere({ file: pool.origin.file, line: pool.origin.line });
  return `profile "${pool.profileId}" (${formatCidr4(pool.subnet4)} and ${formatCidr6(span.subnet6)}, ${where})`;
}

function rejectOverlap(byNetwork: readonly TwinSpan[]): void {
  for (let i = 1; i < byNetwork.length; i++) {
    const [earlier, later] = [byNetwork[i - 1], byNetwork[i]];
    if (earlier && later && cidr6Overlap(earlier.subnet6, later.subnet6)) {
      throw new TnatError(
        'E_MAPPING',
        `the IPv6 ranges of ${describe(earlier)} and ${describe(later)} overlap, so an IPv6 client could not be named: give each pool its own IPv6 range`,
      );
    }
  }
}

export class TwinIndex {
  /** Pools with twins, in the pools' order. */
  readonly spans: readonly TwinSpan[];
  private readonly byNetwork: readonly TwinSpan[];
  private readonly byPool: ReadonlyMap<ClientPool, TwinSpan>;

  constructor(pools: readonly ClientPool[]) {
    this.spans = pools.map(spanOf).filter((span) => span !== undefined);
    this.byNetwork = [...this.spans].sort((a, b) =>
      a.subnet6.network < b.subnet6.network ? -1 : a.subnet6.network > b.subnet6.network ? 1 : 0,
    );
    rejectOverlap(this.byNetwork);
    this.byPool = new Map(this.spans.map((span) => [span.pool, span]));
  }

  get count(): number {
    return this.spans.reduce((sum, span) => sum + span.last4 - span.first4 + 1, 0);
  }

  /** The twin of IPv4 client `client4` of `pool`, or undefined when it has none. */
  twinOf(pool: ClientPool, client4: number): bigint | undefined {
    const span = this.byPool.get(pool);
    if (!span || client4 < span.first4 || client4 > span.last4) return undefined;
    return span.subnet6.network + BigInt(client4 - pool.subnet4.network);
  }

  /** The IPv4 client whose twin `address6` is, with its span; undefined when none. */
  clientOf(address6: bigint): { readonly client4: number; readonly span: TwinSpan } | undefined {
    let low = 0;
    let high = this.byNetwork.length - 1;
    let found: TwinSpan | undefined;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const span = this.byNetwork[middle];
      if (span && span.subnet6.network <= address6) {
        found = span;
        low = middle + 1;
      } else {
        high = middle - 1;
      }
    }
    if (!found) return undefined;
    const offset = address6 - found.subnet6.network;
    if (offset > 0xffffffffn) return undefined;
    const client4 = found.pool.subnet4.network + Number(offset);
    return client4 >= found.first4 && client4 <= found.last4 ? { client4, span: found } : undefined;
  }
}
