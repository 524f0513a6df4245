import { readFileSync } from 'node:fs';
import { parseIpv4 } from '../../src/net/ipv4.js';
import { parseNftChainsJson, parseNftTableJson } from '../../src/netfilter/nft-json.js';

// Captured from `nft -j list table ip traceable_nat` (nftables 1.0.6) after loading a
// two-client table, one of whose blocks is a single port.
const listing = readFileSync('test/fixtures/render/nft-list.json', 'utf8');
const ip = (text: string) => parseIpv4(text) ?? Number.NaN;

describe('parseNftTableJson', () => {
  const table = parseNftTableJson(listing);

  test('reads the clients map, including a one-port block', () => {
    expect(table.clients).toEqual([
      {
        client: ip('10.42.0.2'),
        publicAddress: ip('192.0.2.1'),
        firstPort: 65280,
        lastPort: 65535,
        proto: 'both',
      },
      {
        client: ip('10.42.0.3'),
        publicAddress: ip('192.0.2.1'),
        firstPort: 65279,
        lastPort: 65279,
        proto: 'both',
      },
    ]);
    expect(table.othersMatch).toBe(true);
  });

  test('reads the chain and its two snat-to-map rules', () => {
    expect(table.chain).toEqual({ priority: 90, hook: 'postrouting', type: 'nat' });
    expect(table.rules).toEqual([
      { outInterface: 'eth0', l4protoOp: '==', snatMap: '@clients' },
      { outInterface: 'eth0', l4protoOp: '!=', snatMap: '@others' },
    ]);
  });

  test('the others map matches only when it gives every client its address and nothing else', () => {
    const withOthers = (elements: [string, string][]) => {
      const json = JSON.parse(listing) as {
        nftables: { map?: { name: string; elem?: unknown } }[];
      };
      for (const object of json.nftables)
        if (object.map?.name === 'others') object.map.elem = elements;
      return parseNftTableJson(JSON.stringify(json)).othersMatch;
    };
    expect(
      withOthers([
        ['10.42.0.2', '192.0.2.1'],
        ['10.42.0.3', '192.0.2.1'],
      ]),
    ).toBe(true);
    expect(withOthers([['10.42.0.2', '192.0.2.1']])).toBe(false);
    expect(
      withOthers([
        ['10.42.0.2', '192.0.2.1'],
        ['10.42.0.3', '192.0.2.9'],
      ]),
    ).toBe(false);
    expect(
      withOthers([
        ['10.42.0.2', '192.0.2.1'],
        ['10.42.0.4', '192.0.2.1'],
      ]),
    ).toBe(false);
    expect(
      withOthers([
        ['10.42.0.2', '192.0.2.1'],
        ['10.42.0.3', '192.0.2.1'],
        ['10.42.0.4', '192.0.2.1'],
      ]),
    ).toBe(false);
  });

  test('an empty table has no chain and no clients', () => {
    const empty = parseNftTableJson(
      '{"nftables": [{"table": {"family": "ip", "name": "traceable_nat"}}]}',
    );
    expect(empty).toEqual({
      chain: undefined,
      rules: [],
      clients: [],
      othersMatch: true,
      canaries: [],
    });
  });
});

// Captured from `nft -j list chains ip` (nftables 1.0.6) with our table, its canary chain, and
// another table's postrouting chain (eduVPN's masquerade).
const chains = readFileSync('test/fixtures/render/nft-list-chains.json', 'utf8');
const digest = '0123456789abcdef'.repeat(4);

describe('parseNftChainsJson', () => {
  test("reads our chain's hook and the canary, not another table's chain", () => {
    expect(parseNftChainsJson(chains, 'traceable_nat')).toEqual({
      chain: { priority: 90, hook: 'postrouting', type: 'nat' },
      canaries: [digest],
    });
    expect(parseNftChainsJson(chains, 'eduvpn')).toEqual({
      chain: { priority: 100, hook: 'postrouting', type: 'nat' },
      canaries: [],
    });
  });

  test('finds nothing of a table that is not there, and no canary in a name that is not one', () => {
    expect(parseNftChainsJson(chains, 'other')).toEqual({ chain: undefined, canaries: [] });
    const named = (name: string) =>
      JSON.stringify({ nftables: [{ chain: { family: 'ip', table: 't', name } }] });
    expect(parseNftChainsJson(named(`applied_${digest.slice(1)}`), 't').canaries).toEqual([]);
    expect(parseNftChainsJson(named(`applied_${digest.toUpperCase()}`), 't').canaries).toEqual([]);
    expect(parseNftChainsJson(named(`other_${digest}`), 't').canaries).toEqual([]);
    expect(parseNftChainsJson(named(`applied_${digest}`), 't').canaries).toEqual([digest]);
  });

  test('a whole table listing reports its canaries too', () => {
    const withCanary = JSON.stringify({
      nftables: [
        { chain: { family: 'ip', table: 'traceable_nat', name: `applied_${digest}`, handle: 8 } },
      ],
    });
    expect(parseNftTableJson(withCanary).canaries).toEqual([digest]);
    expect(parseNftTableJson(listing).canaries).toEqual([]);
  });
});
