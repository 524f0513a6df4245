import { previousFromMap6 } from '../../src/mapping/map6.js';
import { renderIp6tablesChains } from '../../src/render/iptables6.js';
import { renderNftTable6 } from '../../src/render/nftables6.js';
import { readPrevious6 } from '../../src/render/read-rules6.js';
import { mergeIntoRulesFile } from '../../src/render/rules-file.js';
import { planRuleset6 } from '../../src/render/ruleset6.js';
import { parseConfig } from '../../src/config.js';
import { pool6 } from '../mapping/fixtures6.js';
import { readFixture } from './golden.js';
import { prefixMap6, treeMap6 } from './maps6.js';

const options = { outInterface: 'eth0' };

describe('reading IPv6 bindings back', () => {
  test('from rules.v6 and from our table ip6, exactly as rendered', () => {
    const expected = previousFromMap6(treeMap6());
    const merged = mergeIntoRulesFile(
      readFixture('eduvpn3-rules.v6'),
      renderIp6tablesChains(treeMap6(), options),
      '/etc/iptables/rules.v6',
    );
    expect(readPrevious6(merged)).toEqual(expected);
    expect(readPrevious6(renderNftTable6(treeMap6(), options))).toEqual(expected);
  });

  test('from a table ip6 rendered with one `{ tcp, udp }` rule per client (archives before one rule per protocol)', () => {
    const expected = previousFromMap6(treeMap6());
    const older = renderNftTable6(treeMap6(), options)
      .replace(/^.* meta l4proto udp snat .*\n/gm, '')
      .replace(/ meta l4proto tcp snat /g, ' meta l4proto { tcp, udp } snat ');
    expect(older).toContain('meta l4proto { tcp, udp } snat ip6 to [2001:db8::1]:');
    expect(older).not.toContain('meta l4proto udp snat');
    expect(readPrevious6(older)).toEqual(expected);
  });

  test('prefix mode and eduVPN alone hold no bindings', () => {
    expect(readPrevious6(renderNftTable6(prefixMap6(), options))).toBeUndefined();
    expect(readPrevious6(readFixture('eduvpn3-rules.v6'))).toBeUndefined();
  });

  test('a plan keeps the blocks of the rules.v6 it merges into when the pools are reordered', () => {
    const config = parseConfig(
      'nat:\n  publicAddresses: [192.0.2.1]\n  outInterface: eth0\nnat6:\n  publicAddresses: [2001:db8::1]\n  portsPerClient: 512\n',
      'x.yaml',
    );
    const pools = [
      pool6('internet', '10.87.12.0/26', 'fd87:12::/64'),
      pool6('office', '10.87.13.0/29', 'fd87:13::/112', 'openvpn'),
    ];
    const first = planRuleset6(config, pools, readFixture('eduvpn3-rules.v6'));
    const again = planRuleset6(config, [...pools].reverse(), first?.fileText);
    expect(again?.fileText).toBe(first?.fileText);
    // Without the rules.v6 to keep to, the reordered office would take the top block.
    const fresh = planRuleset6(config, [...pools].reverse(), undefined);
    expect(fresh?.map.forward((0xfd870013n << 96n) | 2n)?.block).toEqual({
      first: 65024,
      last: 65535,
    });
  });
});
