import { renderIp6tablesChains } from '../../src/render/iptables6.js';
import { renderNatTable } from '../../src/render/iptables.js';
import { renderNftTable6 } from '../../src/render/nftables6.js';
import { extractNatPart, mergeIntoRulesFile } from '../../src/render/rules-file.js';
import { expectGolden, readFixture } from './golden.js';
import { prefixMap6, treeMap6 } from './maps6.js';

const options = { outInterface: 'eth0' };
const FILE = '/etc/iptables/rules.v6';

describe('IPv6 rendering', () => {
  test('ip6tables port blocks: a tree with the seed leaf form (golden)', () => {
    const text = renderNatTable(renderIp6tablesChains(treeMap6(), options));
    expectGolden('tree6-ip6tables.rules', text);
    expect(text).toContain(
      '-s fd87:12::2/128 -p tcp -j SNAT --to-source [2001:db8::1]:64512-65535',
    );
    // 63 blocks per address: client 64 in hand-out order (the office's third) spills over.
    expect(text).toContain(
      '-s fd87:13::4/128 -p udp -j SNAT --to-source [2001:db8::2]:64512-65535',
    );
  });

  test('every chain name fits iptables (28 characters) and is unique', () => {
    const { chains } = renderIp6tablesChains(treeMap6(), options);
    expect(chains.size).toBeGreaterThan(2);
    for (const name of chains.keys()) expect(name.length).toBeLessThanOrEqual(28);
  });

  test('ip6tables prefix mode: one NETMAP rule per client range (golden)', () => {
    const text = renderNatTable(renderIp6tablesChains(prefixMap6(), options));
    expectGolden('prefix6-ip6tables.rules', text);
  });

  test('merged into eduVPN rules.v6: our jump before its MASQUERADE, the rest byte for byte', () => {
    const eduvpn = readFixture('eduvpn3-rules.v6');
    const ours = renderIp6tablesChains(treeMap6(), options);
    const merged = mergeIntoRulesFile(eduvpn, ours, FILE);
    expectGolden('tree6-merged-eduvpn3.rules.v6', merged);
    const lines = merged.split('\n');
    expect(lines.indexOf('-A POSTROUTING -o eth0 -j TNAT')).toBe(
      lines.indexOf('-A POSTROUTING -s fc00::/7 -o eth0 -j MASQUERADE') - 1,
    );
    // Merging again changes nothing; our chains read back as rendered.
    expect(mergeIntoRulesFile(merged, ours, FILE)).toBe(merged);
    expect(new Map([...extractNatPart(merged).chains])).toEqual(new Map([...ours.chains]));
  });

  test('nftables, both modes (golden)', () => {
    expectGolden('tree6.nft', renderNftTable6(treeMap6(), options));
    expectGolden('prefix6.nft', renderNftTable6(prefixMap6(), options));
  });
});
