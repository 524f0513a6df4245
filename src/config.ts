/**
 * traceable-nat's own configuration: the one zod schema that knows its shape. Parsed once,
 * every problem reported at once with its key path and line, then frozen and handed around.
 */
import { realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { parseArchiveName } from './archive/names.js';
import { isNode, type Document, type LineCounter } from 'yaml';
import * as z from 'zod';
import { readConfigYaml } from './config-yaml.js';
import { TnatError, type Where } from './errors.js';
import { cidrContains, parseCidr4, parseIpv4 } from './net/ipv4.js';
import { cidr6Contains, formatCidr6, isIpv4Mapped, parseCidr6, parseIpv6 } from './net/ipv6.js';
import type { PortBlock } from './mapping/types.js';

export { DEFAULT_CONFIG_FILE } from './config-path.js';

/** How a wrong value is shown in a message: strings quoted, lists and mappings by kind. */
function shown(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return 'a list';
  if (value === null) return 'null';
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return 'a mapping';
}

/**
 * A zod error map saying what was expected: `"lots" is not a number of ports: use ...`. With
 * no value zod's own issue stays, which describeIssue turns into "is missing".
 */
function expected(what: string) {
  return (issue: { readonly input?: unknown }): string | undefined =>
    issue.input === undefined ? undefined : `${shown(issue.input)} is not ${what}`;
}

/**
 * The longest wait setTimeout and setInterval take: Node fires a longer one after 1 ms instead,
 * with only a TimeoutOverflowWarning (https://nodejs.org/api/timers.html#settimeoutcallback-delay-args).
 */
const LONGEST_TIMER_MS = 2 ** 31 - 1;

/** A whole number of milliseconds of at least `min`, that a Node timer can wait. */
function milliseconds(min: number, example: number) {
  const what = `a number of milliseconds: use a whole number of at least ${String(min)}, like ${String(example)}`;
  return z
    .int({ error: expected(what) })
    .min(min, { error: expected(what) })
    .max(LONGEST_TIMER_MS, {
      error: (issue) =>
        `${String(issue.input)} is more than ${String(LONGEST_TIMER_MS)} ms (about 24.8 days), the longest a timer waits: use a smaller whole number, like ${String(example)}`,
    });
}

const path = z
  .string({ error: expected('a file or directory path') })
  .min(1, 'is empty: give a file or directory path');

const portRangeText = /^(\d{1,5})(?:\s*-\s*(\d{1,5}))?$/;

/** `1024-65535`, `8080` or a bare number, as a PortBlock. */
const portRange = z
  .union([z.string(), z.int()], { error: expected('a port or port range like 1024-65535') })
  .transform((input, ctx): PortBlock => {
    const match = portRangeText.exec(String(input).trim());
    const first = Number(match?.[1]);
    const last = match?.[2] === undefined ? first : Number(match[2]);
    if (!match || first < 1 || last > 65535 || first > last) {
      ctx.addIssue({
        code: 'custom',
        message: `"${String(input)}" is not a port or port range like 1024-65535 (ports 1 to 65535, low-high)`,
      });
      return z.NEVER;
    }
    return { first, last };
  });

const ipv4 = z
  .string({ error: expected('an IPv4 address like 192.0.2.1') })
  .refine((text) => parseIpv4(text) !== undefined, {
    error: (issue) => `"${String(issue.input)}" is not an IPv4 address like 192.0.2.1`,
  });

/**
 * Addresses that can never be the source of a packet on the internet, so SNAT to them loses
 * every client's traffic (RFC 1122 3.2.1.3, RFC 5771, RFC 1112 4; 0.0.0.0 was once loaded).
 */
const NOT_A_SOURCE: readonly { readonly cidr: string; readonly why: string }[] = [
  { cidr: '0.0.0.0/8', why: '"this network" (RFC 1122)' },
  { cidr: '127.0.0.0/8', why: 'loopback' },
  { cidr: '224.0.0.0/4', why: 'multicast' },
  { cidr: '240.0.0.0/4', why: 'reserved, and holds the broadcast address 255.255.255.255' },
];

function notASourceReason(text: string): string | undefined {
  const address = parseIpv4(text);
  if (address === undefined) return undefined;
  const match = NOT_A_SOURCE.find(({ cidr }) => {
    const range = parseCidr4(cidr);
    return range !== undefined && cidrContains(range, address);
  });
  return match && `${match.cidr}, ${match.why}`;
}

/** Public addresses: each a possible source address, and none twice. */
function checkPublicAddresses(addresses: readonly string[], ctx: z.RefinementCtx): void {
  addresses.forEach((text, index) => {
    const reason = notASourceReason(text);
    if (reason !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: [index],
        message: `"${text}" lies in ${reason}, and can never be a source address: use this server's own public IPv4 address on nat.outInterface (see ip -4 address show)`,
      });
    } else if (addresses.indexOf(text) !== index) {
      ctx.addIssue({
        code: 'custom',
        path: [index],
        message: `"${text}" is listed twice: list each public address once`,
      });
    }
  });
}

const powerOfTwo = z
  .int({ error: expected('a number of ports: use a power of two like 64') })
  .min(1, { error: expected('a number of ports: use a power of two from 1 to 32768, like 64') })
  .max(32768, {
    error: expected('a number of ports: use a power of two from 1 to 32768, like 64'),
  })
  .refine((n) => (n & (n - 1)) === 0, {
    error: (issue) =>
      `${String(issue.input)} ports per client does not divide the port space evenly: use a power of two (64, 128, 256, ...)`,
  });

const interfaceName = z
  .string({ error: expected('a network interface name such as eth0') })
  .regex(/^[A-Za-z0-9_.:@+-]{1,15}$/, {
    error: expected('a network interface name such as eth0 (at most 15 characters)'),
  });

/**
 * IPv6 ranges that can never be the source of a packet on the internet (RFC 4291 2.5.2, 2.5.3,
 * 2.5.6, 2.7): SNAT to them loses every client's IPv6 traffic.
 */
const NOT_A_SOURCE6: readonly { readonly cidr: string; readonly why: string }[] = [
  { cidr: '::/128', why: 'the unspecified address' },
  { cidr: '::1/128', why: 'loopback' },
  { cidr: 'fe80::/10', why: 'link-local, never routed' },
  { cidr: 'ff00::/8', why: 'multicast' },
];

/** Why `text` (an IPv6 address or prefix) cannot be a public source, or undefined. */
function notASource6(text: string): string | undefined {
  const address = text.includes('/') ? parseCidr6(text)?.network : parseIpv6(text);
  if (address === undefined) return undefined;
  if (isIpv4Mapped(address)) {
    return `is an IPv4-mapped address (::ffff:0:0/96): nat6 takes IPv6 addresses; put IPv4 ones in nat.publicAddresses`;
  }
  const match = NOT_A_SOURCE6.find(({ cidr }) => {
    const range = parseCidr6(cidr);
    return range !== undefined && cidr6Contains(range, address);
  });
  return match && `lies in ${match.cidr}, ${match.why}, and can never be a source address`;
}

/** What is wrong with a value that should be IPv6: an IPv4 one gets its own hint. */
function notIpv6(text: string, kind: 'address' | 'prefix'): string {
  const example = kind === 'address' ? '2001:db8::1' : '2001:db8:100::/64';
  if (parseIpv4(text.split('/')[0] ?? '') !== undefined) {
    const plural = kind === 'address' ? 'addresses' : 'prefixes';
    return `"${text}" is IPv4: nat6 takes IPv6 ${plural} like ${example}; IPv4 belongs in nat.publicAddresses`;
  }
  return `"${text}" is not an IPv6 ${kind} like ${example}`;
}

const ipv6Address = z
  .string({ error: expected('an IPv6 address like 2001:db8::1') })
  .superRefine((text, ctx) => {
    const reason = notASource6(text);
    if (parseIpv6(text) === undefined) {
      ctx.addIssue({ code: 'custom', message: notIpv6(text, 'address') });
    } else if (reason !== undefined) {
      ctx.addIssue({ code: 'custom', message: `"${text}" ${reason}` });
    }
  });

const ipv6Prefix = z
  .string({ error: expected('an IPv6 prefix like 2001:db8:100::/64') })
  .superRefine((text, ctx) => {
    const range = parseCidr6(text);
    let problem: string | undefined;
    if (range === undefined) problem = notIpv6(text, 'prefix');
    else if (parseCidr6(text, true) === undefined)
      problem = `"${text}" has host bits set: write the prefix as ${formatCidr6(range)}`;
    else {
      const reason = notASource6(text);
      if (reason !== undefined) problem = `"${text}" ${reason}`;
    }
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

function checkPublicAddresses6(addresses: readonly string[], ctx: z.RefinementCtx): void {
  const values = addresses.map(parseIpv6);
  values.forEach((value, index) => {
    if (value !== undefined && values.indexOf(value) !== index) {
      ctx.addIssue({
        code: 'custom',
        path: [index],
        message: `"${addresses[index] ?? ''}" is listed twice: list each public address once`,
      });
    }
  });
}

/**
 * IPv6 (issue 14): port blocks on public IPv6 addresses, or one public address per client in a
 * prefix (stateless, as ip6tables NETMAP). The port keys default to nat's (see resolveNat6).
 */
const nat6Schema = z.strictObject({
  publicAddresses: z
    .array(ipv6Address, { error: expected('a list of IPv6 addresses like [2001:db8::1]') })
    .min(1, 'needs at least one public IPv6 address, or leave it out')
    .superRefine(checkPublicAddresses6)
    .optional(),
  publicPrefix: ipv6Prefix.optional(),
  outInterface: interfaceName.optional(),
  portRange: portRange.optional(),
  excludePorts: z
    .array(portRange, { error: expected('a list of ports or ranges like [8080, 9000-9100]') })
    .optional(),
  portsPerClient: z
    .union([z.literal('auto'), powerOfTwo], {
      error: expected('a number of ports: use auto or a power of two like 64'),
    })
    .optional(),
  minPortsPerClient: powerOfTwo.optional(),
});

/**
 * The IPv6 translation in force: port blocks, a prefix, or none (IPv6 left as it is). `where`
 * is the config line of the key in use, for mapping errors only the eduVPN ranges reveal.
 */
export type Nat6 = (
  | {
      readonly mode: 'ports';
      readonly publicAddresses: readonly string[];
      readonly outInterface: string;
      readonly portRange: PortBlock;
      readonly excludePorts: readonly PortBlock[];
      readonly portsPerClient: number | 'auto';
      readonly minPortsPerClient: number;
    }
  | { readonly mode: 'prefix'; readonly publicPrefix: string; readonly outInterface: string }
) & { readonly where?: Where | undefined };

function resolveNat6(
  nat6: z.output<typeof nat6Schema> | undefined,
  nat: {
    outInterface: string;
    portRange: PortBlock;
    excludePorts: PortBlock[];
    portsPerClient: number | 'auto';
    minPortsPerClient: number;
  },
): Nat6 | undefined {
  if (nat6 === undefined) return undefined;
  const outInterface = nat6.outInterface ?? nat.outInterface;
  if (nat6.publicPrefix !== undefined) {
    return { mode: 'prefix', publicPrefix: nat6.publicPrefix, outInterface };
  }
  if (nat6.publicAddresses === undefined) return undefined;
  return {
    mode: 'ports',
    publicAddresses: nat6.publicAddresses,
    outInterface,
    portRange: nat6.portRange ?? nat.portRange,
    excludePorts: nat6.excludePorts ?? nat.excludePorts,
    portsPerClient: nat6.portsPerClient ?? nat.portsPerClient,
    minPortsPerClient: nat6.minPortsPerClient ?? nat.minPortsPerClient,
  };
}

/** The nat6 problems only the whole section shows: the two modes at once, a useless key. */
function checkNat6(nat6: z.output<typeof nat6Schema> | undefined, ctx: z.RefinementCtx): void {
  if (nat6 === undefined) return;
  if (nat6.publicAddresses !== undefined && nat6.publicPrefix !== undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['nat6', 'publicPrefix'],
      message:
        'and nat6.publicAddresses are both set: use port blocks (publicAddresses) or one address per client (publicPrefix), not both',
    });
  }
  const portKeys = (
    ['portRange', 'excludePorts', 'portsPerClient', 'minPortsPerClient'] as const
  ).filter((key) => nat6[key] !== undefined);
  if (nat6.publicPrefix !== undefined && portKeys.length > 0) {
    ctx.addIssue({
      code: 'custom',
      path: ['nat6', portKeys[0] ?? ''],
      message: `does nothing with nat6.publicPrefix (every client has its own address, ports are not divided): remove it`,
    });
  }
}

/** Where the eduVPN files are. */
const eduvpnSchema = z.strictObject({
  source: z
    .enum(['auto', 'portal', 'profiles', 'server-api', 'node'], {
      error: expected('an eduVPN source: use auto, portal, profiles, node or server-api'),
    })
    .default('auto'),
  portalConfig: path.default('/etc/vpn-user-portal/config.php'),
  profilesDir: path.default('/etc/vpn-user-portal/profiles'),
  serverApiConfig: path.default('/etc/vpn-server-api/config.php'),
  nodeConfig: path.default('/etc/vpn-server-node/config.php'),
  openvpnDir: path.default('/etc/openvpn/server'),
  wireguardConfig: path.default('/etc/wireguard/wg0.conf'),
  nodeNumber: z
    .int({ error: expected("a node number: use 0 on a single server, or the portal's onNode") })
    .min(0, { error: expected("a node number: use 0 on a single server, or the portal's onNode") })
    .default(0),
});

/** The plan cache of the state file's directory (/var/lib/traceable-nat/plan-cache.json). */
export function planCacheFile(stateFile: string): string {
  return join(dirname(stateFile), 'plan-cache.json');
}

/** A path traceable-nat writes or locks, with the name a message gives it. */
export interface FirewallFile {
  /** The firewall key that sets it; the plan cache has none. */
  readonly key?: string;
  readonly label: string;
  readonly path: string;
}

/**
 * Every path of firewall that must name a file of its own, in the order the messages prefer:
 * rulesFile6 only for iptables, since nftables keeps both families in rulesFile.
 */
export function firewallFiles(firewall: {
  backend: 'iptables' | 'nftables';
  rulesFile?: string | undefined;
  rulesFile6: string;
  archiveDir?: string | undefined;
  stateFile: string;
  lockFile: string;
}): FirewallFile[] {
  const { backend, rulesFile, rulesFile6, archiveDir, stateFile, lockFile } =
    resolveFirewallPaths(firewall);
  return [
    { key: 'rulesFile', label: 'firewall.rulesFile', path: rulesFile },
    ...(backend === 'iptables'
      ? [{ key: 'rulesFile6', label: 'firewall.rulesFile6', path: rulesFile6 }]
      : []),
    { key: 'stateFile', label: 'firewall.stateFile', path: stateFile },
    { label: 'the plan cache kept beside firewall.stateFile', path: planCacheFile(stateFile) },
    { key: 'lockFile', label: 'firewall.lockFile', path: lockFile },
    { key: 'archiveDir', label: 'firewall.archiveDir', path: archiveDir },
  ];
}

/**
 * Two paths that name the same file overwrite each other: rulesFile6 = rulesFile made an apply
 * replace the IPv4 rules with the IPv6 ones. Compared as resolve() spells them (`./`, `//`, a
 * trailing `/`) and as they lie on disk (onDisk): a rules file renamed into a linked directory
 * lands on whatever the other name of that directory holds, and a rules file that links to
 * another is merged from that other file's rules.
 */
function checkFilePaths(files: readonly FirewallFile[], ctx: z.RefinementCtx): void {
  // `placed`: where a file written there lands, its directory resolved but not the file: a
  // rules file the original script left as a link into its archive is renamed over (the
  // link replaced), never written through.
  const located = files.map((file) => ({
    ...file,
    real: onDisk(file.path),
    placed: join(onDisk(dirname(file.path)), basename(file.path)),
    inode: inodeOf(file.path),
  }));
  const archiveDir = located.find((file) => file.key === 'archiveDir');
  for (const file of located) {
    if (archiveDir && file.key !== undefined) {
      const named = isArchivePath(file.path, archiveDir.path);
      if (named || isArchivePath(file.placed, archiveDir.real)) {
        ctx.addIssue({
          code: 'custom',
          path: ['firewall', file.key],
          message: named
            ? `${JSON.stringify(file.path)} is named as an archive of firewall.archiveDir, and archives are never written over: give it another name`
            : `${JSON.stringify(file.path)} is an archive of firewall.archiveDir once symbolic links are followed (${JSON.stringify(file.placed)}), and archives are never written over: give it a path that is no archive`,
        });
      }
    }
    const first = located.find(
      (other) =>
        resolve(other.path) === resolve(file.path) ||
        other.real === file.real ||
        (other.inode !== undefined && other.inode === file.inode),
    );
    if (first === undefined || first === file) continue;
    // The plan cache is no key of its own: the key that meets it carries the problem.
    const [at, other] = file.key === undefined ? [first, file] : [file, first];
    if (at.key === undefined) continue;
    ctx.addIssue({
      code: 'custom',
      path: ['firewall', at.key],
      message:
        resolve(at.path) === resolve(other.path)
          ? `${JSON.stringify(at.path)} is also ${other.label}: give each its own path`
          : at.real === other.real
            ? `${JSON.stringify(at.path)} is also ${other.label} once symbolic links are followed (both are ${JSON.stringify(at.real)}): give each its own file`
            : `${JSON.stringify(at.path)} is also ${other.label} through a hard link (one file with two names: an apply would read the one as the other): give each its own file`,
    });
  }
}

/**
 * The file `path` names as device and inode, to tell two names of one file apart from two
 * files (a hard link); undefined for a path with no file yet, and for a directory.
 */
function inodeOf(path: string): string | undefined {
  try {
    // statSync does not open the file: a FIFO or a device cannot block it.
    const stats = statSync(path, { throwIfNoEntry: false });
    return stats && !stats.isDirectory() ? `${stats.dev}:${stats.ino}` : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Where `path` lies on disk: its longest existing ancestor as realpath resolves it, with the
 * rest joined on, since a file not written yet may still lie in a linked directory. realpath
 * only lstat()s and readlink()s, it opens nothing, so a FIFO or a device cannot block it. A
 * path it cannot resolve (missing, no permission, a loop) is looked up by its parent; a
 * dangling link stays as it is spelt, since a rename replaces the link itself.
 */
function onDisk(path: string): string {
  const rest: string[] = [];
  for (let at = resolve(path); ; at = dirname(at)) {
    try {
      return join(realpathSync(at), ...rest);
    } catch {
      if (dirname(at) === at) return resolve(path);
      rest.unshift(basename(at));
    }
  }
}

/**
 * Whether `path` names an archive of `archiveDir` (`rules.v4.<seconds>[.gz]` and the like in
 * it): the rules file belongs beside the archives (/etc/iptables), never over one.
 */
export function isArchivePath(path: string, archiveDir: string): boolean {
  return (
    dirname(resolve(path)) === resolve(archiveDir) && parseArchiveName(basename(path)) !== undefined
  );
}

export const configSchema = z
  .strictObject({
    eduvpn: eduvpnSchema.prefault({}),
    nat: z.strictObject({
      publicAddresses: z
        .array(ipv4, { error: expected('a list of IPv4 addresses like [192.0.2.1]') })
        .min(1, 'needs at least one public IPv4 address')
        .superRefine(checkPublicAddresses),
      outInterface: interfaceName,
      portRange: portRange.default({ first: 1024, last: 65535 }),
      excludePorts: z
        .array(portRange, { error: expected('a list of ports or ranges like [8080, 9000-9100]') })
        .default([]),
      portsPerClient: z
        .union([z.literal('auto'), powerOfTwo], {
          error: expected('a number of ports: use auto or a power of two like 64'),
        })
        .default('auto'),
      minPortsPerClient: powerOfTwo.default(64),
    }),
    nat6: nat6Schema.optional(),
    firewall: z
      .strictObject({
        backend: z
          .enum(['iptables', 'nftables'], {
            error: expected('a backend: use iptables or nftables'),
          })
          .default('iptables'),
        /** Defaults depend on the backend: see resolveFirewallPaths. */
        rulesFile: path.optional(),
        /** iptables backend: the IPv6 rules file netfilter-persistent loads (nat6). */
        rulesFile6: path.default('/etc/iptables/rules.v6'),
        archiveDir: path.optional(),
        lockFile: path.default('/run/traceable-nat.lock'),
        lockTimeoutMs: milliseconds(0, 30000).default(30000),
        /** `iptables` (nf_tables based, Debian's default) or `iptables-legacy`; -save/-restore are derived. */
        iptables: z
          .enum(['iptables', 'iptables-legacy'], {
            error: expected('an iptables variant: use iptables or iptables-legacy'),
          })
          .default('iptables'),
        nftTable: z
          .string({ error: expected('an nftables table name like traceable_nat') })
          .regex(/^[a-z][a-z0-9_]{0,30}$/, {
            error: expected(
              'an nftables table name like traceable_nat (a lower-case letter, then letters, digits or _)',
            ),
          })
          .default('traceable_nat'),
        /** Run after a new ruleset was written (the original's `-c`); none by default. */
        afterWrite: z
          .string({ error: expected('a shell command: give one, or null for none') })
          .min(1, 'is empty: give a shell command, or null for none')
          .nullable()
          .default(null),
        flushConntrack: z.boolean({ error: expected('true or false') }).default(true),
        /** gzip the archives (`rules.v4.<seconds>.gz`): a /16 is 1.2 MB instead of 14.5 MB. */
        compressArchives: z.boolean({ error: expected('true or false') }).default(true),
        /** Anchors the newest archive of firewall.archiveDir outside that directory. */
        stateFile: path.default('/var/lib/traceable-nat/state.json'),
        /** Refuse an apply that removes more than half of the clients, or all of a protocol's. */
        removalGuard: z.boolean({ error: expected('true or false') }).default(true),
      })
      .prefault({}),
    daemon: z
      .strictObject({
        settleMs: milliseconds(0, 2000).default(2000),
        verifyIntervalMs: milliseconds(1000, 60000).default(60000),
      })
      .prefault({}),
    trace: z
      .strictObject({
        portalDatabase: path.default('/var/lib/vpn-user-portal/db.sqlite'),
        serverApiDatabase: path.default('/var/lib/vpn-server-api/db.sqlite'),
        /** Extra archive directories (e.g. collected from other nodes); firewall.archiveDir is always read. */
        archiveDirs: z
          .array(path, { error: expected('a list of directories like [/srv/archive/node1]') })
          .default([]),
      })
      .prefault({}),
  })
  .superRefine((config, ctx) => {
    checkNat6(config.nat6, ctx);
    checkFilePaths(firewallFiles(config.firewall), ctx);
    const sections: [string, PortBlock, readonly PortBlock[]][] = [
      ['nat', config.nat.portRange, config.nat.excludePorts],
    ];
    // Exclusions nat6 inherits from nat may lie outside its own range: they just do nothing.
    if (config.nat6?.excludePorts !== undefined) {
      sections.push([
        'nat6',
        config.nat6.portRange ?? config.nat.portRange,
        config.nat6.excludePorts,
      ]);
    }
    for (const [key, range, excludePorts] of sections) {
      excludePorts.forEach((excluded, index) => {
        if (excluded.last < range.first || excluded.first > range.last) {
          ctx.addIssue({
            code: 'custom',
            path: [key, 'excludePorts', index],
            message: `${excluded.first}-${excluded.last} lies outside ${key}.portRange ${range.first}-${range.last}, so excluding it does nothing`,
          });
        }
      });
    }
  })
  .transform((config) => ({
    ...config,
    firewall: resolveFirewallPaths(config.firewall),
    nat6: resolveNat6(config.nat6, config.nat),
  }));

/** Where each backend keeps its rules and archives unless the configuration says otherwise. */
export const FIREWALL_DEFAULTS = {
  iptables: { rulesFile: '/etc/iptables/rules.v4', archiveDir: '/etc/iptables' },
  nftables: {
    rulesFile: '/etc/traceable-nat/traceable-nat.nft',
    archiveDir: '/etc/traceable-nat/archive',
  },
} as const;

function resolveFirewallPaths<
  T extends {
    backend: 'iptables' | 'nftables';
    rulesFile?: string | undefined;
    archiveDir?: string | undefined;
  },
>(firewall: T): T & { rulesFile: string; archiveDir: string } {
  const defaults = FIREWALL_DEFAULTS[firewall.backend];
  return {
    ...firewall,
    rulesFile: firewall.rulesFile ?? defaults.rulesFile,
    archiveDir: firewall.archiveDir ?? defaults.archiveDir,
  };
}

export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

function lineOf(
  doc: Document,
  lines: LineCounter,
  keyPath: readonly PropertyKey[],
): number | undefined {
  // Walk up to the deepest node that exists (an unknown or missing key points at its parent).
  for (let depth = keyPath.length; depth >= 0; depth--) {
    const node = doc.getIn(keyPath.slice(0, depth) as unknown[], true);
    if (isNode(node) && node.range) return lines.linePos(node.range[0]).line;
  }
  return undefined;
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const key = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.map((k) => (key ? `${key}.${k}` : k));
    return `unknown key ${keys.join(', ')}: remove it or check its spelling against config.example.yaml`;
  }
  // Parsed with reportInput: only a key that is not there has no input.
  if (issue.code === 'invalid_type' && issue.input === undefined) {
    return `${key} is missing: add it (see config.example.yaml)`;
  }
  if (issue.code === 'invalid_type' && issue.expected === 'object') {
    return key
      ? `${key}: ${shown(issue.input)} is not a mapping of ${key} keys: write them as key: value lines below it (see config.example.yaml)`
      : `the configuration is ${shown(issue.input)}, not a mapping of sections (eduvpn, nat, firewall, daemon, trace): see config.example.yaml`;
  }
  return `${key || 'the configuration'}: ${issue.message}`;
}

/**
 * zod 4 still runs a length check on a value of the wrong type (`[]` as a path is "not a path"
 * and also "empty"): keep only the first problem of each key.
 */
function withoutFollowUps(issues: readonly z.core.$ZodIssue[]): z.core.$ZodIssue[] {
  const seen = new Set<string>();
  return issues.filter((issue) => {
    if (issue.code === 'unrecognized_keys') return true;
    const key = issue.path.map(String).join('.');
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** Parses and validates the YAML text of a config file; `file` is only used in messages. */
export function parseConfig(text: string, file: string): Config {
  const { doc, lines, value } = readConfigYaml(text, file);
  const result = configSchema.safeParse(value ?? {}, { reportInput: true });
  if (!result.success) {
    const problems = withoutFollowUps(result.error.issues).map((issue) => {
      const keyPath =
        issue.code === 'unrecognized_keys' ? [...issue.path, issue.keys[0] ?? ''] : issue.path;
      const line = lineOf(doc, lines, keyPath);
      return `${file}${line === undefined ? '' : `:${line}`}: ${describeIssue(issue)}`;
    });
    const sentence =
      problems.length === 1
        ? (problems[0] ?? '')
        : `${problems.length} problems in the configuration:\n  ${problems.join('\n  ')}`;
    throw new TnatError('E_CONFIG', sentence);
  }
  const { nat6 } = result.data;
  if (nat6 === undefined) return deepFreeze(result.data);
  const key = nat6.mode === 'prefix' ? 'publicPrefix' : 'publicAddresses';
  const where = { file, line: lineOf(doc, lines, ['nat6', key]) };
  return deepFreeze({ ...result.data, nat6: { ...nat6, where } });
}
