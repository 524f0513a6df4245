/**
 * eduVPN 2.x profiles (`/etc/vpn-server-api/config.php`, `vpnProfiles` keyed by profile id) ->
 * client pools. 2.x only speaks OpenVPN: each profile's `range` is split into one subnet per
 * `vpnProtoPorts` entry, in list order. A 2.x node's `/etc/vpn-server-node/config.php` may
 * limit the profiles it serves with `profileList`.
 */
import type { Where } from '../errors.js';
import type { PhpValue, Position } from './php-value.js';
import { expectArray, expectString, getEntry, parsePhpConfig } from './php.js';
import type { ClientPool } from './pool.js';
import { checkProfileId, collectPools, type ProfileSite } from './profile-checks.js';
import {
  isValidProcessCount,
  makePool,
  parseClientRange4,
  parseRange6,
  sourceError,
  splitRange4,
  splitRange6,
} from './ranges.js';

/** A 2.x node's parsed config.php, for its `profileList`. */
export interface ServerNodeConfig {
  readonly value: PhpValue;
  readonly file: string;
}

/** The 2.x default when a profile has no `vpnProtoPorts`. */
const DEFAULT_PROTO_PORTS = ['udp/1194', 'tcp/1194'];
const PROTO_PORT = /^(udp|tcp)\/\d{1,5}$/;

function at(file: string, pos: Position): Where {
  return { file, line: pos.line, column: pos.column };
}

function stringList(
  value: PhpValue,
  file: string,
  what: string,
): { text: string; pos: Position }[] {
  return expectArray(value, file, what).map((entry) => ({
    text: expectString(entry.value, file, what),
    pos: entry.value.pos,
  }));
}

/** The profile ids a 2.x node serves; undefined when it serves them all. */
function servedProfiles(node: ServerNodeConfig | undefined): ProfileSite[] | undefined {
  if (!node) return undefined;
  const list = setEntry(node.value, 'profileList');
  if (!list) return undefined;
  return stringList(list, node.file, 'profileList').map(({ text, pos }) => ({
    profileId: text,
    where: at(node.file, pos),
  }));
}

function processCount(profile: PhpValue, file: string, label: string): number {
  const value = setEntry(profile, 'vpnProtoPorts');
  if (!value) return DEFAULT_PROTO_PORTS.length;
  const entries = stringList(value, file, `vpnProtoPorts of ${label}`);
  for (const { text, pos } of entries) {
    if (!PROTO_PORT.test(text)) {
      throw sourceError(
        `vpnProtoPorts entry '${text}' of ${label} is not a protocol and port: write it like udp/1194 or tcp/443`,
        at(file, pos),
      );
    }
  }
  if (!isValidProcessCount(entries.length)) {
    throw sourceError(
      `vpnProtoPorts of ${label} has ${entries.length} entries, one OpenVPN process each, but ` +
        'eduVPN needs 1, 2, 4, 8, 16, 32 or 64: add or remove entries',
      at(file, value.pos),
    );
  }
  return entries.length;
}

/** The value under `key`, when it is set (not missing, not null). */
function setEntry(array: PhpValue, key: string): PhpValue | undefined {
  const value = getEntry(array, key);
  return value?.kind === 'null' ? undefined : value;
}

/** The /112 of each process within `range6`; none when the profile has no IPv6 range. */
function processSubnets6(profile: PhpValue, file: string, label: string, count: number): string[] {
  const value = setEntry(profile, 'range6');
  if (!value) return [];
  const what = `range6 of ${label}`;
  const where = at(file, value.pos);
  return splitRange6(parseRange6(expectString(value, file, what), what, where), count, what, where);
}

function profilePools(profile: PhpValue, file: string, profileId: string): ClientPool[] {
  const label = `profile '${profileId}'`;
  expectArray(profile, file, label);
  const count = processCount(profile, file, label);
  const value = setEntry(profile, 'range');
  if (!value) {
    throw sourceError(
      `${label} has no 'range': add its IPv4 client range, like '10.0.0.0/24'`,
      at(file, profile.pos),
    );
  }
  const what = `range of ${label}`;
  const where = at(file, value.pos);
  const range4 = parseClientRange4(expectString(value, file, what), what, where);
  const subnets6 = processSubnets6(profile, file, label, count);
  return splitRange4(range4, count, what, where).map((subnet, n) =>
    makePool(profileId, 'openvpn', subnet, { file, line: where.line, process: n }, subnets6[n]),
  );
}

/**
 * The pools of the 2.x profiles in the server-api config text, limited to the node's
 * `profileList` when a node config is given and has one.
 */
export function parseServerApiConfig(
  text: string,
  file: string,
  nodeConfig?: ServerNodeConfig,
): ClientPool[] {
  const config = parsePhpConfig(text, file);
  expectArray(config, file, 'the returned configuration');
  const list = setEntry(config, 'vpnProfiles');
  if (!list) {
    throw sourceError(
      "defines no 'vpnProfiles', so it names no VPN profiles: check that this is the 2.x vpn-server-api config",
      at(file, config.pos),
    );
  }
  const profiles = expectArray(list, file, 'vpnProfiles').map((entry) => {
    const where = at(file, entry.pos);
    if (typeof entry.key !== 'string') {
      throw sourceError(
        `vpnProfiles is keyed by profile id, but this entry has the number ${entry.key} as key: write it as 'internet' => [...]`,
        where,
      );
    }
    return { profileId: checkProfileId(entry.key, where), where, value: entry.value };
  });
  const served = servedProfiles(nodeConfig);
  for (const site of served ?? []) {
    if (!profiles.some((profile) => profile.profileId === site.profileId)) {
      throw sourceError(
        `profileList names '${site.profileId}', which vpnProfiles in ${file} ` +
          'does not define: fix the spelling or remove it',
        site.where,
      );
    }
  }
  return collectPools(
    profiles.map((profile) => ({
      ...profile,
      pools:
        served && !served.some((site) => site.profileId === profile.profileId)
          ? []
          : profilePools(profile.value, file, profile.profileId),
    })),
  );
}
