/**
 * A temporary eduVPN server on disk: the portal's config.php with WireGuard profiles, and a
 * traceable-nat config.yaml whose every path points into the same temporary directory.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Cleanup } from './cleanup.js';
import { OUT_INTERFACE } from './layouts.js';

export interface Profile {
  readonly id: string;
  /** The profile's WireGuard IPv4 range: one pool, clients network+2 ... broadcast-1. */
  readonly range: string;
}

export interface SiteSettings {
  readonly backend: 'iptables' | 'nftables';
  readonly publicAddresses: readonly string[];
  readonly settleMs?: number;
  /** Where the archives are; the site's own directory by default. */
  readonly archiveDir?: string;
}

export interface Site {
  readonly dir: string;
  readonly configFile: string;
  readonly portalConfig: string;
  readonly rulesFile: string;
  readonly archiveDir: string;
  readonly stateFile: string;
  writeProfiles(profiles: readonly Profile[]): void;
  writeConfig(settings: SiteSettings): void;
}

/** fd00:<index>::/64 per profile: the portal wants an IPv6 range next to every IPv4 one. */
export function renderPortalConfig(profiles: readonly Profile[]): string {
  const entries = profiles.map((profile, index) =>
    [
      '        [',
      `            'profileId' => '${profile.id}',`,
      `            'displayName' => '${profile.id}',`,
      `            'hostName' => 'vpn.example.org',`,
      `            'wRangeFour' => '${profile.range}',`,
      `            'wRangeSix' => 'fd00:${(index + 1).toString(16)}::/64',`,
      '        ],',
    ].join('\n'),
  );
  return `<?php\n\ndeclare(strict_types=1);\n\nreturn [\n    'ProfileList' => [\n${entries.join('\n')}\n    ],\n];\n`;
}

export function createSite(cleanup: Cleanup, label: string): Site {
  const dir = mkdtempSync(join(tmpdir(), `tnbench-${label}-`));
  cleanup.add(`directory ${dir}`, () => {
    rmSync(dir, { recursive: true, force: true });
  });
  const portalConfig = join(dir, 'vpn-user-portal', 'config.php');
  mkdirSync(join(dir, 'vpn-user-portal'));
  const configFile = join(dir, 'config.yaml');
  const site = {
    dir,
    configFile,
    portalConfig,
    rulesFile: join(dir, 'rules'),
    archiveDir: join(dir, 'archive'),
    stateFile: join(dir, 'state.json'),
    writeProfiles(profiles: readonly Profile[]) {
      writeFileSync(portalConfig, renderPortalConfig(profiles));
    },
    writeConfig(settings: SiteSettings) {
      const config = {
        eduvpn: {
          source: 'portal',
          portalConfig,
          profilesDir: join(dir, 'profiles'),
          openvpnDir: join(dir, 'openvpn'),
          wireguardConfig: join(dir, 'wg0.conf'),
        },
        nat: {
          publicAddresses: settings.publicAddresses,
          outInterface: OUT_INTERFACE,
          portsPerClient: 64,
        },
        firewall: {
          backend: settings.backend,
          rulesFile: site.rulesFile,
          archiveDir: settings.archiveDir ?? site.archiveDir,
          lockFile: join(dir, 'lock'),
          stateFile: site.stateFile,
          lockTimeoutMs: 10000,
        },
        daemon: { settleMs: settings.settleMs ?? 2000, verifyIntervalMs: 600000 },
        trace: {
          portalDatabase: join(dir, 'db.sqlite'),
          serverApiDatabase: join(dir, 'server-api.sqlite'),
        },
      };
      // JSON is YAML.
      writeFileSync(configFile, JSON.stringify(config, null, 2) + '\n');
    },
  };
  return site;
}
