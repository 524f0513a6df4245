import { readFileSync } from 'node:fs';
import { parseConfig } from '../../src/config.js';
import { parsePortalConfig } from '../../src/eduvpn/portal.js';
import fc from 'fast-check';
import { ourPartOf, planRuleset } from '../../src/apply/plan.js';
import { clientBindings } from '../../src/archive/binding-columns.js';
import { renderArchive } from '../../src/archive/header.js';
import {
  bindingsOfArchive,
  bindingsOfText,
  decodeBindingIndex,
  encodeBindingIndex,
} from '../../src/archive/binding-index.js';
import { sameBindings } from '../../src/mapping/bindings.js';
import { assignmentColumns } from '../../src/mapping/columns.js';
import { isTnatError } from '../../src/errors.js';
import { formatCidr4 } from '../../src/net/ipv4.js';
import { ip, poolOf } from '../mapping/fixtures.js';

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
      const before = first.map.forward(assignment.client);
      expect([before?.firstPort, before?.lastPort]).toEqual([
        assignment.firstPort,
        assignment.lastPort,
      ]);
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

  test("a plan's bindings, taken from its map, are what its rules read back (for the archive index and the daemon)", () => {
    // Pools in distinct /22 cells of 10/8; one to four public addresses; either backend.
    const siteArb = fc.record({
      cells: fc.uniqueArray(
        fc.record({
          cell: fc.integer({ min: 0, max: 16383 }),
          prefix: fc.integer({ min: 23, max: 30 }),
        }),
        { selector: (pool) => pool.cell, minLength: 1, maxLength: 6 },
      ),
      publicHosts: fc.uniqueArray(fc.integer({ min: 1, max: 254 }), {
        minLength: 1,
        maxLength: 4,
      }),
      portsPerClient: fc.constantFrom(64, 128, 256, 1024),
      backend: fc.constantFrom('iptables', 'nftables'),
      rulesText: fc.constantFrom(undefined, defaultRules),
    });
    let compared = 0;
    fc.assert(
      fc.property(siteArb, (site) => {
        const siteConfig = parseConfig(
          [
            'nat:',
            `  publicAddresses: [${site.publicHosts.map((host) => `192.0.2.${host}`).join(', ')}]`,
            '  outInterface: eth0',
            `  portsPerClient: ${site.portsPerClient}`,
            'firewall:',
            `  backend: ${site.backend}`,
          ].join('\n'),
          'test.yaml',
        );
        const sitePools = site.cells.map(({ cell, prefix }, index) =>
          poolOf(`p${index}`, formatCidr4({ network: ip('10.0.0.0') + cell * 1024, prefix })),
        );
        let plan;
        try {
          plan = planRuleset(
            siteConfig,
            { ...discovery, pools: sitePools },
            { rulesText: site.rulesText, archiveBody: undefined },
          );
        } catch (error) {
          // More clients than the public addresses hold: no plan to compare.
          if (isTnatError(error) && error.code === 'E_MAPPING') return;
          throw error;
        }
        // The binding index written from the plan's columns is the one its text gives.
        const fromPlan = bindingsOfText(plan.fileText, () => assignmentColumns(plan.map));
        const fromText = bindingsOfText(plan.fileText);
        expect(fromPlan.rows).toBeDefined();
        expect(fromText.rows).toBeUndefined();
        expect(fromPlan.assignments()).toEqual(fromText.assignments());
        expect(fromPlan.addresses).toEqual(fromText.addresses);
        expect(encodeBindingIndex('a', 'b', fromPlan)).toEqual(
          encodeBindingIndex('a', 'b', fromText),
        );
        // As the apply writes it: the header and the body apart, not joined first.
        const head = renderArchive(
          {
            tool: 'traceable-nat test',
            backend: site.backend,
            applyStarted: '2026-12-06T00:00:00.000Z',
            reason: 'first',
            clients: plan.map.clientCount,
            settings: {},
            previous: undefined,
          },
          '',
        );
        expect(
          encodeBindingIndex(
            'a',
            'b',
            bindingsOfArchive(head, plan.fileText, () => assignmentColumns(plan.map)),
          ),
        ).toEqual(encodeBindingIndex('a', 'b', bindingsOfText(head + plan.fileText)));
        const index = encodeBindingIndex('a', 'b', fromPlan);
        const rows = index && decodeBindingIndex(index, 'a', 'b')?.rows?.();
        expect(rows && sameBindings(clientBindings(rows), assignmentColumns(plan.map))).toBe(true);
        compared++;
      }),
      { numRuns: 60 },
    );
    // The property was checked, not skipped: about 70 % of these random sites fit (34-49 of
    // 60 in eighteen runs), so more than 30 failed about once in a few hundred runs; 15 keeps
    // the check and leaves chance out of it.
    expect(compared).toBeGreaterThanOrEqual(15);
  });
});
