import { readFileSync } from 'node:fs';
import { parseIpv4 } from '../../src/net/ipv4.js';
import { parseNftTableJson } from '../../src/netfilter/nft-json.js';

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
    expect(table.others).toBe(2);
  });

  test('reads the chain and its two snat-to-map rules', () => {
    expect(table.chain).toEqual({ priority: 90, hook: 'postrouting', type: 'nat' });
    expect(table.rules).toEqual([
      { outInterface: 'eth0', l4protoOp: '==', snatMap: '@clients' },
      { outInterface: 'eth0', l4protoOp: '!=', snatMap: '@others' },
    ]);
  });

  test('an empty table has no chain and no clients', () => {
    const empty = parseNftTableJson(
      '{"nftables": [{"table": {"family": "ip", "name": "traceable_nat"}}]}',
    );
    expect(empty).toEqual({ chain: undefined, rules: [], clients: [], others: 0 });
  });
});
