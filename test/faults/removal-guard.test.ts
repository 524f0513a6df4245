/**
 * Issue 11, item 6: valid but emptied or half-written eduVPN input. An empty `ProfileList`
 * reads fine and used to apply "0 clients", removing every rule and every client's conntrack
 * entries; a wg0.conf cut after `[Interface]` dropped every WireGuard client. Such an apply is
 * refused (exit 2, kernel and files untouched) unless --force says it is meant, and the daemon,
 * which cannot be asked, keeps the active rules and says why.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { applyRuleset } from '../../src/apply/apply.js';
import { discover } from '../../src/cli/discovery.js';
import { loadConfig } from '../../src/config-file.js';
import { isTnatError } from '../../src/errors.js';
import { systemClock } from '../../src/system/clock.js';
import { netnsRunner } from '../helpers/netns-runner.js';
import { isRoot } from '../helpers/netns.js';
import { ALPHA, BETA, createFaultSite, readText, type FaultSite } from './site.js';

// Namespaces need root; CI runs as root.
const describeKernel = isRoot() ? describe : describe.skip;

const EMPTY_PORTAL =
  "<?php\n\ndeclare(strict_types=1);\n\nreturn [\n    'ProfileList' => [\n    ],\n];\n";

describeKernel.each(['iptables', 'nftables'] as const)('emptied eduVPN input (%s)', (backend) => {
  describe('portal configuration', () => {
    let site: FaultSite;

    beforeAll(() => {
      site = createFaultSite(backend);
      site.sandbox.writeProfiles([ALPHA, BETA]);
      expect(site.cli(['apply']).status).toBe(0);
    });
    afterAll(() => {
      site.destroy();
    });

    test('an empty ProfileList is refused, and nothing changes', () => {
      const kernelBefore = site.kernelState();
      const fileBefore = readText(site.sandbox.rulesFile);
      const archivesBefore = site.archives();
      writeFileSync(site.sandbox.portalConfig, EMPTY_PORTAL);
      const result = site.cli(['apply']);
      expect(result.stderr).toMatch(
        /^traceable-nat: this apply would remove 503 of the 503 active clients \(more than half\), which looks like a half-written or emptied eduVPN file \(.*config\.php\); nothing was changed: .*--force/,
      );
      expect(result.stderr.split('\n')).toHaveLength(2); // one sentence, no stack trace
      expect(result.status).toBe(2);
      expect(site.kernelState()).toBe(kernelBefore);
      expect(readText(site.sandbox.rulesFile)).toBe(fileBefore);
      expect(site.archives()).toEqual(archivesBefore);
    });

    test('the apply the daemon runs is refused the same way: its rules stay', async () => {
      const kernelBefore = site.kernelState();
      const config = loadConfig(site.sandbox.configFile);
      const error = await applyRuleset(config, {
        runner: netnsRunner(site.net.gateway),
        clock: systemClock,
        discover,
      }).then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(isTnatError(error) && error.code).toBe('E_SOURCE');
      expect(site.kernelState()).toBe(kernelBefore);
    });

    test('a flushed kernel does not hide the removal: the anchored archive still counts', () => {
      site.net.exec(
        site.net.gateway,
        backend === 'iptables'
          ? ['iptables', '-t', 'nat', '-F']
          : ['nft', 'delete', 'table', 'ip', 'traceable_nat'],
      );
      const result = site.cli(['apply']);
      expect(result.stderr).toMatch(/would remove 503 of the 503 active clients/);
      expect(result.status).toBe(2);
    });

    test('--force applies it when it is meant', () => {
      const result = site.cli(['apply', '--force', '--json']);
      expect(result.status).toBe(0);
      expect((JSON.parse(result.stdout) as { clients: number }).clients).toBe(0);
    });
  });

  describe('node files', () => {
    let site: FaultSite;
    let wg0: string;

    beforeAll(() => {
      site = createFaultSite(backend);
      const dir = site.sandbox.dir;
      const openvpnDir = join(dir, 'openvpn');
      wg0 = join(dir, 'wg0.conf');
      mkdirSync(openvpnDir, { recursive: true });
      // OpenVPN 10.42.1.0/24 (253 clients) and WireGuard 10.42.0.0/26 (61 clients).
      writeFileSync(
        join(openvpnDir, 'office-0.conf'),
        'dev tun0\nserver 10.42.1.0 255.255.255.0\nsetenv PROFILE_ID office\n',
      );
      writeFileSync(
        wg0,
        '[Interface]\nAddress = 10.42.0.1/26,fd42::1/64\nListenPort = 51820\nPrivateKey = secret\n',
      );
      site.sandbox.writeConfig({ eduvpn: { source: 'node' } });
      expect(site.cli(['apply']).status).toBe(0);
    });
    afterAll(() => {
      site.destroy();
    });

    test('a wg0.conf cut after [Interface] is refused: every WireGuard client would go', () => {
      const kernelBefore = site.kernelState();
      writeFileSync(wg0, '[Interface]\n');
      const result = site.cli(['apply']);
      expect(result.stderr).toMatch(
        /this apply would remove all 61 WireGuard clients, which looks like a half-written or emptied eduVPN file \(.*wg0\.conf/,
      );
      expect(result.status).toBe(2);
      expect(site.kernelState()).toBe(kernelBefore);
    });

    test('with firewall.removalGuard: false it is applied', () => {
      site.sandbox.writeConfig({ eduvpn: { source: 'node' }, firewall: { removalGuard: false } });
      const result = site.cli(['apply', '--json']);
      expect(result.status).toBe(0);
      expect((JSON.parse(result.stdout) as { clients: number }).clients).toBe(253);
    });
  });
});
