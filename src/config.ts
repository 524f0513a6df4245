/**
 * traceable-nat's own configuration: the one zod schema that knows its shape. Parsed once,
 * every problem reported at once with its key path and line, then frozen and handed around.
 */
import { LineCounter, parseDocument, isNode, type Document } from 'yaml';
import { z } from 'zod';
import { TnatError } from './errors.js';
import { cidrContains, parseCidr4, parseIpv4 } from './net/ipv4.js';
import type { PortBlock } from './mapping/types.js';

export const DEFAULT_CONFIG_FILE = '/etc/traceable-nat/config.yaml';

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

/** A whole number of milliseconds of at least `min`. */
function milliseconds(min: number, example: number) {
  const what = `a number of milliseconds: use a whole number of at least ${String(min)}, like ${String(example)}`;
  return z.int({ error: expected(what) }).min(min, { error: expected(what) });
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
    firewall: z
      .strictObject({
        backend: z
          .enum(['iptables', 'nftables'], {
            error: expected('a backend: use iptables or nftables'),
          })
          .default('iptables'),
        /** Defaults depend on the backend: see resolveFirewallPaths. */
        rulesFile: path.optional(),
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
  .transform((config) => ({ ...config, firewall: resolveFirewallPaths(config.firewall) }))
  .superRefine((config, ctx) => {
    const { portRange: range, excludePorts } = config.nat;
    excludePorts.forEach((excluded, index) => {
      if (excluded.last < range.first || excluded.first > range.last) {
        ctx.addIssue({
          code: 'custom',
          path: ['nat', 'excludePorts', index],
          message: `${excluded.first}-${excluded.last} lies outside nat.portRange ${range.first}-${range.last}, so excluding it does nothing`,
        });
      }
    });
  });

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
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  const yamlError = doc.errors[0];
  if (yamlError) {
    const pos = lines.linePos(yamlError.pos[0]);
    throw new TnatError(
      'E_CONFIG',
      `${yamlError.message.split('\n')[0] ?? 'YAML syntax error'}; fix the YAML syntax`,
      {
        where: { file, line: pos.line, column: pos.col },
      },
    );
  }
  const result = configSchema.safeParse(doc.toJS() ?? {}, { reportInput: true });
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
  return deepFreeze(result.data);
}
