import { readFileSync } from 'node:fs';
import { parseConfig } from '../../src/config.js';
import { parsePortalConfig } from '../../src/eduvpn/portal.js';
import { ourPartOf, planRuleset } from '../../src/apply/plan.js';

const PORTAL = 'examples/etc/vpn-user-portal/config.php';
const config = parseConfig(
  'nat:\n  publicAddresses: [192.0.2.1]\n  outInterface: eth0\n  portsPerClient: 64\n',
  'test.yaml',
);
const pools = parsePortalConfig(readFileSync(PORTAL, 'utf8'), PORTAL, 0);
const discovery = { source: 'portal' as const, files: [PORTAL], pools };
const defaultRules = readFileSync('test/fixtures/render/eduvpn3-rules.v4', 'utf8');

describe('planRuleset', () => {
  test('our part, computed without parsing, equals our part read back from the file', () => {
    const plan = planRuleset(config, discovery, {
      rulesText: defaultRules,
      archiveBody: undefined,
    });
    expect(plan.ourPart).toBe(ourPartOf(plan.fileText, 'iptables'));
  });

  test('planning over its own output changes nothing (stable and idempotent)', () => {
    const first = planRuleset(config, discovery, {
      rulesText: defaultRules,
      archiveBody: undefined,
    });
    const again = planRuleset(config, discovery, {
      rulesText: first.fileText,
      archiveBody: undefined,
    });
    expect(again.fileText).toBe(first.fileText);
  });

  test('existing clients keep their blocks when a profile is removed from the front', () => {
    const first = planRuleset(config, discovery, { rulesText: undefined, archiveBody: undefined });
    const fewer = { ...discovery, pools: pools.filter((pool) => pool.profileId !== 'internet') };
    const next = planRuleset(config, fewer, { rulesText: first.fileText, archiveBody: undefined });
    for (const assignment of next.map.assignments()) {
      expect(first.map.forward(assignment.client)?.block).toEqual(assignment.block);
    }
    expect(next.map.clientCount).toBeLessThan(first.map.clientCount);
  });

  test('the nftables plan is the table transaction', () => {
    const nft = parseConfig(
      'nat:\n  publicAddresses: [192.0.2.1]\n  outInterface: eth0\nfirewall:\n  backend: nftables\n',
      'test.yaml',
    );
    const plan = planRuleset(nft, discovery, { rulesText: undefined, archiveBody: undefined });
    expect(plan.fileText).toContain('table ip traceable_nat {');
    expect(plan.fileText).toContain('10.42.0.2 : 192.0.2.1 . 65472-65535');
    expect(plan.ourPart).toBe(plan.fileText);
  });
});
