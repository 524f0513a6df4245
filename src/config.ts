/**
 * traceable-nat's own configuration: the one zod schema that knows its shape. Parsed once,
 * every problem reported at once with its key path and line, then frozen and handed around.
 */
import { LineCounter, parseDocument, isNode, type Document } from 'yaml';
import { z } from 'zod';
import { TnatError } from './errors.js';
import { parseIpv4 } from './net/ipv4.js';
import type { PortBlock } from './mapping/types.js';

export const DEFAULT_CONFIG_FILE = '/etc/traceable-nat/config.yaml';

const path = z.string().min(1, 'must be a file or directory path');

const portRangeText = /^(\d{1,5})(?:\s*-\s*(\d{1,5}))?$/;

/** `1024-65535`, `8080` or a bare number, as a PortBlock. */
const portRange = z.union([z.string(), z.int()]).transform((input, ctx): PortBlock => {
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

const ipv4 = z.string().refine((text) => parseIpv4(text) !== undefined, {
  error: (issue) => `"${String(issue.input)}" is not an IPv4 address`,
});

const powerOfTwo = z
  .int()
  .min(1)
  .max(32768)
  .refine((n) => (n & (n - 1)) === 0, {
    error: (issue) =>
      `${String(issue.input)} ports per client does not divide the port space evenly: use a power of two (64, 128, 256, ...)`,
  });

const interfaceName = z
  .string()
  .regex(
    /^[A-Za-z0-9_.:@+-]{1,15}$/,
    'must be a network interface name such as eth0 (at most 15 characters)',
  );

/** Where the eduVPN files are. */
const eduvpnSchema = z.strictObject({
  source: z.enum(['auto', 'portal', 'profiles', 'server-api', 'node']).default('auto'),
  portalConfig: path.default('/etc/vpn-user-portal/config.php'),
  profilesDir: path.default('/etc/vpn-user-portal/profiles'),
  serverApiConfig: path.default('/etc/vpn-server-api/config.php'),
  nodeConfig: path.default('/etc/vpn-server-node/config.php'),
  openvpnDir: path.default('/etc/openvpn/server'),
  wireguardConfig: path.default('/etc/wireguard/wg0.conf'),
  nodeNumber: z.int().min(0).default(0),
});

export const configSchema = z
  .strictObject({
    eduvpn: eduvpnSchema.prefault({}),
    nat: z.strictObject({
      publicAddresses: z.array(ipv4).min(1, 'needs at least one public IPv4 address'),
      outInterface: interfaceName,
      portRange: portRange.default({ first: 1024, last: 65535 }),
      excludePorts: z.array(portRange).default([]),
      portsPerClient: z.union([z.literal('auto'), powerOfTwo]).default('auto'),
      minPortsPerClient: powerOfTwo.default(64),
    }),
    firewall: z
      .strictObject({
        backend: z.enum(['iptables', 'nftables']).default('iptables'),
        /** Defaults depend on the backend: see resolveFirewallPaths. */
        rulesFile: path.optional(),
        archiveDir: path.optional(),
        lockFile: path.default('/run/traceable-nat.lock'),
        lockTimeoutMs: z.int().min(0).default(30000),
        /** `iptables` (nf_tables based, Debian's default) or `iptables-legacy`; -save/-restore are derived. */
        iptables: z.enum(['iptables', 'iptables-legacy']).default('iptables'),
        nftTable: z
          .string()
          .regex(/^[a-z][a-z0-9_]{0,30}$/, 'must be an nftables table name like traceable_nat')
          .default('traceable_nat'),
        /** Run after a new ruleset was written (the original's `-c`); none by default. */
        afterWrite: z.string().min(1).nullable().default(null),
        flushConntrack: z.boolean().default(true),
        /** Anchors the newest archive of firewall.archiveDir outside that directory. */
        stateFile: path.default('/var/lib/traceable-nat/state.json'),
        /** Refuse an apply that removes more than half of the clients, or all of a protocol's. */
        removalGuard: z.boolean().default(true),
      })
      .prefault({}),
    daemon: z
      .strictObject({
        settleMs: z.int().min(0).default(2000),
        verifyIntervalMs: z.int().min(1000).default(60000),
      })
      .prefault({}),
    trace: z
      .strictObject({
        portalDatabase: path.default('/var/lib/vpn-user-portal/db.sqlite'),
        serverApiDatabase: path.default('/var/lib/vpn-server-api/db.sqlite'),
        /** Extra archive directories (e.g. collected from other nodes); firewall.archiveDir is always read. */
        archiveDirs: z.array(path).default([]),
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
  if (issue.code === 'invalid_type' && issue.input === undefined) {
    return `${key} is missing: add it (see config.example.yaml)`;
  }
  return `${key || 'the configuration'}: ${issue.message}`;
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
  const result = configSchema.safeParse(doc.toJS() ?? {});
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
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
