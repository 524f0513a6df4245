/**
 * The files an eduVPN 3.x node (or a single server) generates from its controller's profiles:
 * `/etc/openvpn/server/<profileId>-<n>.conf` per OpenVPN process and `/etc/wireguard/wg0.conf`.
 * They are the ground truth of what runs on this machine. Both hold secrets (inline keys, the
 * WireGuard private key): only the few directives read here are ever quoted in a message.
 */
import { posix } from 'node:path';
import { Address6 } from 'ip-address';
import type { Where } from '../errors.js';
import { broadcastOf, formatIpv4, netmaskToPrefix, parseCidr4, parseIpv4 } from '../net/ipv4.js';
import type { ClientPool } from './pool.js';
import { checkNoOverlap, checkProfileId } from './profile-checks.js';
import {
  checkClientRangeSize,
  formatRange6,
  makePool,
  parseClientRange4,
  sourceError,
} from './ranges.js';

export interface NodeFile {
  readonly file: string;
  readonly text: string;
}

/** How eduVPN names a process's config: `<profileId>-<process>.conf`. */
const OPENVPN_FILE_NAME = /^(.+)-(\d+)\.conf$/;

export function isOpenVpnServerFileName(name: string): boolean {
  return OPENVPN_FILE_NAME.test(name);
}

const REGENERATE = 'let eduVPN regenerate it (vpn-maint-apply-changes)';

interface Directive {
  readonly name: string;
  readonly args: readonly string[];
  readonly line: number;
}

/**
 * The directives outside inline blocks. `<ca>`, `<cert>`, `<key>`, `<tls-crypt>` … hold keys:
 * their lines are skipped unread, and a broken block is reported by its tag and line only.
 */
function openVpnDirectives(text: string, file: string): Directive[] {
  const directives: Directive[] = [];
  let block: { name: string; line: number } | undefined;
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (block) {
      if (line === `</${block.name}>`) block = undefined;
      return;
    }
    const opening = /^<([A-Za-z0-9-]+)>$/.exec(line);
    if (opening?.[1]) {
      block = { name: opening[1], line: index + 1 };
      return;
    }
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return;
    const [name = '', ...args] = line.split(/\s+/);
    directives.push({ name, args, line: index + 1 });
  });
  if (block) {
    throw sourceError(
      `the inline <${block.name}> block is never closed with </${block.name}>, so the file is cut off: ${REGENERATE}`,
      { file, line: block.line },
    );
  }
  return directives;
}

/** One OpenVPN process's pool, from its `server` (and `server-ipv6`, `setenv PROFILE_ID`) lines. */
export function parseOpenVpnServerConfig(text: string, file: string): ClientPool {
  const directives = openVpnDirectives(text, file);
  const nameMatch = OPENVPN_FILE_NAME.exec(posix.basename(file));
  const server = directives.find((directive) => directive.name === 'server');
  if (!server) {
    throw sourceError(
      `has no 'server NETWORK NETMASK' line, so it names no client range: ${REGENERATE}`,
      { file },
    );
  }
  const where: Where = { file, line: server.line };
  const [network = '', netmask = ''] = server.args;
  const prefix = netmaskToPrefix(netmask);
  if (parseIpv4(network) === undefined || prefix === undefined) {
    throw sourceError(
      `'server ${network} ${netmask}' is not a network and netmask like 'server 10.0.0.0 255.255.255.0': ${REGENERATE}`,
      where,
    );
  }
  const what = 'the server range';
  const subnet = checkClientRangeSize(
    parseClientRange4(`${network}/${prefix}`, what, where),
    what,
    where,
  );
  const setenv = directives.find((d) => d.name === 'setenv' && d.args[0] === 'PROFILE_ID');
  const profileId = setenv?.args[1] ?? nameMatch?.[1];
  if (profileId === undefined) {
    throw sourceError(
      `names no profile: add 'setenv PROFILE_ID <id>' or name the file <profileId>-<n>.conf`,
      { file },
    );
  }
  checkProfileId(profileId, { file, line: setenv?.line });
  const ipv6 = directives.find((directive) => directive.name === 'server-ipv6')?.args[0];
  const subnet6 =
    ipv6 !== undefined && Address6.isValid(ipv6) ? formatRange6(new Address6(ipv6)) : undefined;
  const process = nameMatch?.[2] === undefined ? undefined : Number(nameMatch[2]);
  return makePool(profileId, 'openvpn', subnet, { file, line: server.line, process }, subnet6);
}

interface AddressEntry {
  readonly text: string;
  readonly line: number;
}

/** The `Address =` entries of `[Interface]`, split by family, in file order. */
function wireGuardAddresses(text: string): { four: AddressEntry[]; six: AddressEntry[] } {
  const four: AddressEntry[] = [];
  const six: AddressEntry[] = [];
  let section = '';
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.replace(/#.*/, '').trim();
    const header = /^\[(\w+)\]$/.exec(line);
    if (header?.[1]) {
      section = header[1].toLowerCase();
      return;
    }
    const pair = /^(\w+)\s*=\s*(.*)$/.exec(line);
    // Only the key is looked at before deciding; a PrivateKey value is never touched.
    if (section !== 'interface' || pair?.[1]?.toLowerCase() !== 'address') return;
    for (const part of (pair[2] ?? '').split(',')) {
      const entry = { text: part.trim(), line: index + 1 };
      if (entry.text !== '') (entry.text.includes(':') ? six : four).push(entry);
    }
  });
  return { four, six };
}

function wireGuardSubnet(entry: AddressEntry, file: string) {
  const where: Where = { file, line: entry.line };
  const range = parseCidr4(entry.text);
  const address = parseIpv4(entry.text.split('/')[0] ?? '');
  if (!range || address === undefined) {
    throw sourceError(
      `Address entry '${entry.text}' is not an IPv4 or IPv6 address with a prefix, like 10.43.43.1/24: ${REGENERATE}`,
      where,
    );
  }
  const what = `WireGuard Address ${entry.text}`;
  const subnet = checkClientRangeSize(
    parseClientRange4(`${formatIpv4(range.network)}/${range.prefix}`, what, where),
    what,
    where,
  );
  if (address === subnet.network || address === broadcastOf(subnet)) {
    throw sourceError(
      `${what} is not a host address: the server's address is the range's first host, like 10.43.43.1/24; ${REGENERATE}`,
      where,
    );
  }
  return { subnet, where };
}

/**
 * The WireGuard pools of wg0.conf: each IPv4 `Address` entry is the server's address in one
 * profile's range; IPv6 entries (written after all IPv4 ones) pair up with them in order.
 * wg0.conf does not name profiles: `profileIds` does, in the same order, else `wireguard-<n>`.
 */
export function parseWireGuardConfig(
  text: string,
  file: string,
  profileIds?: readonly string[],
): ClientPool[] {
  const { four, six } = wireGuardAddresses(text);
  if (profileIds && profileIds.length !== four.length) {
    throw sourceError(
      `has ${four.length} IPv4 Address entries but ${profileIds.length} WireGuard profile ids were given: give one id per entry`,
      { file },
    );
  }
  return four.map((entry, n) => {
    const { subnet, where } = wireGuardSubnet(entry, file);
    const profileId = checkProfileId(profileIds?.[n] ?? `wireguard-${n}`, where);
    const entry6 = six[n]?.text;
    const subnet6 =
      entry6 !== undefined && Address6.isValid(entry6)
        ? formatRange6(new Address6(entry6))
        : undefined;
    return makePool(profileId, 'wireguard', subnet, { file, line: entry.line }, subnet6);
  });
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** All pools of a node's generated files, OpenVPN processes first, checked for overlaps. */
export function parseNodeFiles(files: {
  readonly openvpn: readonly NodeFile[];
  readonly wireguard?: NodeFile | undefined;
  readonly wireguardProfileIds?: readonly string[] | undefined;
}): ClientPool[] {
  const openvpn = files.openvpn
    .map(({ text, file }) => parseOpenVpnServerConfig(text, file))
    .sort(
      (a, b) =>
        compareText(a.profileId, b.profileId) || (a.origin.process ?? 0) - (b.origin.process ?? 0),
    );
  const wireguard = files.wireguard
    ? parseWireGuardConfig(files.wireguard.text, files.wireguard.file, files.wireguardProfileIds)
    : [];
  const pools = [...openvpn, ...wireguard];
  checkNoOverlap(pools);
  return pools;
}
