/**
 * Checks across profiles that no single file can make: unique profile ids and client ranges
 * that do not overlap. Two pools sharing an address would make a traced port name two clients.
 */
import { formatWhere, type Where } from '../errors.js';
import { broadcastOf, formatCidr4 } from '../net/ipv4.js';
import type { ClientPool } from './pool.js';
import { sourceError } from './ranges.js';

export interface ProfileSite {
  readonly profileId: string;
  readonly where: Where;
}

/**
 * The portal's own rule (`Validator::profileId`: letters, digits, `-` and `.`) plus `_` for
 * older installs; it also keeps the id safe to print in rule comments and logs.
 */
const PROFILE_ID = /^[A-Za-z0-9._-]{1,64}$/;

export function checkProfileId(profileId: string, where: Where): string {
  if (!PROFILE_ID.test(profileId)) {
    throw sourceError(
      `profile id '${profileId}' is not valid: use letters, digits, '-' and '.' only, as the portal requires`,
      where,
    );
  }
  return profileId;
}

export function checkUniqueProfileIds(sites: readonly ProfileSite[]): void {
  const seen = new Map<string, ProfileSite>();
  for (const site of sites) {
    const earlier = seen.get(site.profileId);
    if (earlier) {
      throw sourceError(
        `profile id '${site.profileId}' is also used at ${formatWhere(earlier.where)}: ` +
          'give every profile its own profileId',
        site.where,
      );
    }
    seen.set(site.profileId, site);
  }
}

const PROTOCOL_NAME = { openvpn: 'OpenVPN', wireguard: 'WireGuard' } as const;

function describePool(pool: ClientPool): string {
  const process = pool.origin.process === undefined ? '' : ` process ${pool.origin.process}`;
  return (
    `${formatCidr4(pool.subnet4)} (${PROTOCOL_NAME[pool.protocol]}${process} of profile ` +
    `'${pool.profileId}', ${formatWhere(pool.origin)})`
  );
}

export function checkNoOverlap(pools: readonly ClientPool[]): void {
  const order = pools.map((_, index) => index);
  order.sort((a, b) => (pools[a]?.subnet4.network ?? 0) - (pools[b]?.subnet4.network ?? 0));
  let widest: number | undefined;
  for (const index of order) {
    const pool = pools[index];
    if (!pool) continue;
    const previous = widest === undefined ? undefined : pools[widest];
    if (previous && pool.subnet4.network <= broadcastOf(previous.subnet4)) {
      // Name them in file order, so the error points at the one written later.
      const [first, second] =
        widest !== undefined && widest < index ? [previous, pool] : [pool, previous];
      throw sourceError(
        `client range ${describePool(second)} overlaps ${describePool(first)}: ` +
          'give every profile its own range',
        { file: second.origin.file, line: second.origin.line },
      );
    }
    if (!previous || broadcastOf(pool.subnet4) > broadcastOf(previous.subnet4)) widest = index;
  }
}

/** Checks a source's profiles together and returns the pools of those served on this node. */
export function collectPools(
  profiles: readonly (ProfileSite & { readonly pools: readonly ClientPool[] })[],
): ClientPool[] {
  checkUniqueProfileIds(profiles);
  const pools = profiles.flatMap((profile) => profile.pools);
  checkNoOverlap(pools);
  return pools;
}
