/**
 * A temporary eduVPN server on disk for process-level tests: a 3.x portal config.php written
 * from a list of profiles, a traceable-nat config.yaml pointing every path into the sandbox,
 * and a runner for the real CLI inside a network namespace.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export interface ProfileSpec {
  readonly id: string;
  /** WireGuard range (one pool), or OpenVPN range split over udp+tcp ports. */
  readonly wireguard?: string;
  readonly openvpn?: { readonly range: string; readonly udp: number[]; readonly tcp: number[] };
}

/** A unique IPv6 range derived from the IPv4 one: 10.42.3.0/24 -> fd0a:2a:3::/64. */
function ipv6For(range4: string): string {
  const [a = 0, b = 0, c = 0] = range4.split(/[./]/).map(Number);
  return `fd${a.toString(16).padStart(2, '0')}:${b.toString(16)}:${c.toString(16)}::/64`;
}

export function renderPortalConfig(profiles: readonly ProfileSpec[]): string {
  const entries = profiles.map((profile) => {
    const lines = [
      `        [`,
      `            'profileId' => '${profile.id}',`,
      `            'displayName' => '${profile.id}',`,
      `            'hostName' => 'vpn.example.org',`,
    ];
    if (profile.wireguard) {
      lines.push(
        `            'wRangeFour' => '${profile.wireguard}',`,
        `            'wRangeSix' => '${ipv6For(profile.wireguard)}',`,
      );
    }
    if (profile.openvpn) {
      lines.push(
        `            'oRangeFour' => '${profile.openvpn.range}',`,
        `            'oRangeSix' => '${ipv6For(profile.openvpn.range)}',`,
        `            'oUdpPortList' => [${profile.openvpn.udp.join(', ')}],`,
        `            'oTcpPortList' => [${profile.openvpn.tcp.join(', ')}],`,
      );
    }
    lines.push('        ],');
    return lines.join('\n');
  });
  return `<?php\n\ndeclare(strict_types=1);\n\nreturn [\n    'ProfileList' => [\n${entries.join('\n')}\n    ],\n];\n`;
}

export interface Sandbox {
  readonly dir: string;
  readonly configFile: string;
  readonly portalConfig: string;
  readonly rulesFile: string;
  readonly archiveDir: string;
  readonly stateFile: string;
  writeProfiles(profiles: readonly ProfileSpec[]): void;
  writeConfig(extra?: {
    eduvpn?: Record<string, unknown>;
    nat?: Record<string, unknown>;
    /** nat6 as config.yaml has it; left out when undefined. */
    nat6?: Record<string, unknown>;
    firewall?: Record<string, unknown>;
  }): void;
  remove(): void;
}

export function createSandbox(backend: 'iptables' | 'nftables'): Sandbox {
  const dir = mkdtempSync(join(tmpdir(), 'tnat-'));
  const portalConfig = join(dir, 'vpn-user-portal', 'config.php');
  const rulesFile = join(dir, backend === 'iptables' ? 'rules.v4' : 'traceable-nat.nft');
  const archiveDir = join(dir, 'archive');
  const configFile = join(dir, 'config.yaml');
  const sandbox: Sandbox = {
    dir,
    configFile,
    portalConfig,
    rulesFile,
    archiveDir,
    stateFile: join(dir, 'state.json'),
    writeProfiles(profiles) {
      spawnSync('mkdir', ['-p', join(dir, 'vpn-user-portal')]);
      writeFileSync(portalConfig, renderPortalConfig(profiles));
    },
    writeConfig(extra = {}) {
      const config = {
        eduvpn: {
          source: 'portal',
          portalConfig,
          profilesDir: join(dir, 'profiles'),
          openvpnDir: join(dir, 'openvpn'),
          wireguardConfig: join(dir, 'wg0.conf'),
          ...extra.eduvpn,
        },
        nat: {
          publicAddresses: ['192.0.2.1'],
          outInterface: 'eth0',
          portsPerClient: 64,
          ...extra.nat,
        },
        ...(extra.nat6 && { nat6: extra.nat6 }),
        firewall: {
          backend,
          rulesFile,
          // Never the host's /etc/iptables/rules.v6, whether nat6 is set or not.
          ...(backend === 'iptables' && { rulesFile6: join(dir, 'rules.v6') }),
          archiveDir,
          lockFile: join(dir, 'lock'),
          stateFile: sandbox.stateFile,
          lockTimeoutMs: 2000,
          ...extra.firewall,
        },
      };
      // JSON is YAML.
      writeFileSync(configFile, JSON.stringify(config, null, 2));
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return sandbox;
}

export interface CliResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

const BIN = resolve('bin');

/** Runs bin/<program> inside a network namespace (or on the host when ns is undefined). */
export function runCli(
  ns: string | undefined,
  args: readonly string[],
  program = 'traceable-nat',
): CliResult {
  const command = [join(BIN, program), ...args];
  const result = ns
    ? spawnSync('ip', ['netns', 'exec', ns, ...command], { encoding: 'utf8', timeout: 60000 })
    : spawnSync(command[0] ?? '', command.slice(1), { encoding: 'utf8', timeout: 60000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}
