/**
 * eduVPN 3.x portal profiles (`/etc/vpn-user-portal/config.php`, `ProfileList`) -> client pools,
 * computed the way the portal computes what it hands its nodes (`ProfileConfig`, `Ip::split`).
 */
import type { Where } from '../errors.js';
import type { PhpValue, Position } from './php-value.js';
import {
  expectArray,
  expectInt,
  expectString,
  expectStringOrList,
  getEntry,
  parsePhpConfig,
} from './php.js';
import type { ClientPool } from './pool.js';
import { checkProfileId, collectPools, type ProfileSite } from './profile-checks.js';
import {
  checkClientRangeSize,
  formatRange6,
  isValidProcessCount,
  makePool,
  parseClientRange4,
  parseRange6,
  sourceError,
  splitRange4,
  splitRange6,
} from './ranges.js';

/** A profile and where its id is written (for the checks across profiles). */
export interface PortalProfile extends ProfileSite {
  /** Empty when the profile is not served on this node. */
  readonly pools: readonly ClientPool[];
}

/** The portal's default when a profile has no port lists: one UDP and one TCP process. */
const DEFAULT_PORTS = [1194];

interface Located {
  readonly value: string;
  readonly where: Where;
}

function at(file: string, pos: Position): Where {
  return { file, line: pos.line, column: pos.column };
}

function isUnset(
  value: PhpValue | undefined,
): value is undefined | { kind: 'null'; pos: Position } {
  return value === undefined || value.kind === 'null';
}

/** `onNode` (int or list), by default one entry per `nodeUrl`: `[0]` on a single server. */
function nodeList(profile: PhpValue, file: string, label: string): number[] {
  const onNode = getEntry(profile, 'onNode');
  if (isUnset(onNode)) {
    const nodeUrl = getEntry(profile, 'nodeUrl');
    const count = isUnset(nodeUrl)
      ? 1
      : expectStringOrList(nodeUrl, file, `nodeUrl of ${label}`).length;
    return Array.from({ length: count }, (_, n) => n);
  }
  if (onNode.kind === 'int') return [onNode.value];
  return expectArray(onNode, file, `onNode of ${label}`).map((entry) =>
    expectInt(entry.value, file, `onNode of ${label}`),
  );
}

/** A key that is one string for all nodes, or a list with one entry per `onNode` entry. */
function perNode(
  profile: PhpValue,
  key: string,
  file: string,
  label: string,
  nodes: { readonly index: number; readonly count: number },
): Located | undefined {
  const value = getEntry(profile, key);
  if (isUnset(value)) return undefined;
  if (value.kind === 'string') return { value: value.value, where: at(file, value.pos) };
  const list = expectStringOrList(value, file, `${key} of ${label}`);
  if (list.length !== nodes.count) {
    throw sourceError(
      `${key} of ${label} lists ${list.length} ranges but onNode has ${nodes.count} nodes: ` +
        'give one range per onNode entry, in the same order',
      at(file, value.pos),
    );
  }
  const chosen = list[nodes.index];
  return chosen && { value: chosen.value, where: at(file, chosen.pos) };
}

const PROTOCOL_NAME = { o: 'OpenVPN', w: 'WireGuard' } as const;

/**
 * The IPv4 and IPv6 range of one protocol (`o` or `w`). eduVPN turns a protocol on only when
 * both are set; half a pair is a mistake whose intent nobody can know.
 */
function rangePair(
  prefix: keyof typeof PROTOCOL_NAME,
  range: (key: string) => Located | undefined,
  label: string,
): [Located, Located] | undefined {
  const [fourKey, sixKey] = [`${prefix}RangeFour`, `${prefix}RangeSix`];
  const four = range(fourKey);
  const six = range(sixKey);
  if (four && six) return [four, six];
  const present = four ?? six;
  if (!present) return undefined;
  const [set, missing] = four ? [fourKey, sixKey] : [sixKey, fourKey];
  throw sourceError(
    `${label} sets ${set} but not ${missing}, so eduVPN keeps ${PROTOCOL_NAME[prefix]} off for ` +
      `it and traceable-nat refuses to guess: set both ${fourKey} and ${sixKey}, or neither`,
    present.where,
  );
}

function portCount(profile: PhpValue, key: string, file: string, label: string): number {
  const value = getEntry(profile, key);
  if (isUnset(value)) return DEFAULT_PORTS.length;
  return expectArray(value, file, `${key} of ${label}`).map((entry) =>
    expectInt(entry.value, file, `${key} of ${label}`),
  ).length;
}

function openVpnPools(
  profile: PhpValue,
  file: string,
  profileId: string,
  label: string,
  [four, six]: [Located, Located],
): ClientPool[] {
  const udp = portCount(profile, 'oUdpPortList', file, label);
  const tcp = portCount(profile, 'oTcpPortList', file, label);
  const count = udp + tcp;
  if (!isValidProcessCount(count)) {
    const ports = getEntry(profile, 'oUdpPortList') ?? getEntry(profile, 'oTcpPortList');
    throw sourceError(
      `${label} has ${udp} UDP and ${tcp} TCP ports, that is ${count} OpenVPN processes, but ` +
        'eduVPN needs 1, 2, 4, 8, 16, 32 or 64: change oUdpPortList or oTcpPortList',
      ports ? at(file, ports.pos) : four.where,
    );
  }
  const range4 = parseClientRange4(four.value, `oRangeFour of ${label}`, four.where);
  const range6 = parseRange6(six.value, `oRangeSix of ${label}`, six.where);
  const subnets6 = splitRange6(range6, count, `oRangeSix of ${label}`, six.where);
  // UDP processes come first, then TCP: process n serves subnet n (`<profileId>-<n>.conf`).
  return splitRange4(range4, count, `oRangeFour of ${label}`, four.where).map((subnet, n) =>
    makePool(
      profileId,
      'openvpn',
      subnet,
      { file, line: four.where.line, process: n },
      subnets6[n],
    ),
  );
}

function wireGuardPool(
  file: string,
  profileId: string,
  label: string,
  [four, six]: [Located, Located],
): ClientPool {
  const what = `wRangeFour of ${label}`;
  const range4 = checkClientRangeSize(
    parseClientRange4(four.value, what, four.where),
    what,
    four.where,
  );
  const range6 = parseRange6(six.value, `wRangeSix of ${label}`, six.where);
  return makePool(
    profileId,
    'wireguard',
    range4,
    { file, line: four.where.line },
    formatRange6(range6),
  );
}

/** The profile's id and where it is written; `fallback` names a profile without one. */
function profileIdOf(profile: PhpValue, file: string, fallback: string | undefined): ProfileSite {
  const value = getEntry(profile, 'profileId');
  const where = at(file, (value ?? profile).pos);
  if (!isUnset(value)) {
    return { profileId: checkProfileId(expectString(value, file, 'profileId'), where), where };
  }
  if (fallback === undefined) throw sourceError("this profile has no 'profileId': add one", where);
  return { profileId: checkProfileId(fallback, where), where };
}

/**
 * One profile object, from `ProfileList` or from a profiles/*.json file. `fallbackProfileId`
 * names a profile that carries no `profileId` of its own (a JSON file's name).
 */
export function parsePortalProfile(
  profile: PhpValue,
  file: string,
  nodeNumber: number,
  fallbackProfileId?: string,
): PortalProfile {
  expectArray(profile, file, 'a profile');
  const { profileId, where } = profileIdOf(profile, file, fallbackProfileId);
  const label = `profile '${profileId}'`;
  const nodes = nodeList(profile, file, label);
  const node = { index: nodes.indexOf(nodeNumber), count: nodes.length };
  if (node.index < 0) return { profileId, where, pools: [] };
  const range = (key: string) => perNode(profile, key, file, label, node);
  const openVpn = rangePair('o', range, label);
  const wireGuard = rangePair('w', range, label);
  const pools = openVpn ? openVpnPools(profile, file, profileId, label, openVpn) : [];
  if (wireGuard) pools.push(wireGuardPool(file, profileId, label, wireGuard));
  return { profileId, where, pools };
}

/** All client pools this node (`nodeNumber`) serves, from the text of the portal's config.php. */
export function parsePortalConfig(text: string, file: string, nodeNumber: number): ClientPool[] {
  const config = parsePhpConfig(text, file);
  expectArray(config, file, 'the returned configuration');
  const list = getEntry(config, 'ProfileList');
  if (isUnset(list)) {
    throw sourceError(
      "defines no 'ProfileList', so it names no VPN profiles: add them there, or with portal " +
        '3.9.7 and later as JSON files in the profiles directory (eduvpn.source: profiles)',
      at(file, config.pos),
    );
  }
  const profiles = expectArray(list, file, 'ProfileList').map((entry) =>
    parsePortalProfile(entry.value, file, nodeNumber),
  );
  return collectPools(profiles);
}
