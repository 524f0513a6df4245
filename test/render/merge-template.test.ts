/**
 * The daemon keeps the merge template of the file it wrote instead of parsing the file again:
 * that is only right if a merged file's template renders like the original file's template.
 */
import { readFileSync } from 'node:fs';
import { renderIptablesChains } from '../../src/render/iptables.js';
import { mergeIntoRulesFile, prepareMerge } from '../../src/render/rules-file.js';
import { tinyMap, treeMap } from './maps.js';

const EDUVPN = readFileSync('test/fixtures/render/eduvpn3-rules.v4', 'utf8');
const first = renderIptablesChains(tinyMap(), { outInterface: 'eth0' });
const second = renderIptablesChains(treeMap(), { outInterface: 'eth1' });

describe('prepareMerge', () => {
  test.each([
    ['no file', undefined],
    ['an empty file', ''],
    ['a file without a nat table', '*filter\n:INPUT DROP [0:0]\nCOMMIT\n'],
    ['a nat table without POSTROUTING rules', '*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n'],
    [
      'an admin rule before MASQUERADE',
      '*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -m policy --dir out --pol ipsec -j ACCEPT\n-A POSTROUTING -s 10.0.0.0/8 -o eth0 -j MASQUERADE\nCOMMIT\n',
    ],
    [
      'CRLF line endings',
      '*nat\r\n:POSTROUTING ACCEPT [0:0]\r\n-A POSTROUTING -o eth0 -j MASQUERADE\r\nCOMMIT\r\n',
    ],
    ["eduVPN 3.x's default rules.v4", EDUVPN],
  ])('%s: the merged file renders like the original', (_name, current) => {
    const merged = mergeIntoRulesFile(current, first, 'rules.v4');
    const again = prepareMerge(current, 'rules.v4').render(second);
    expect(prepareMerge(merged, 'rules.v4').render(second)).toBe(again);
    expect(mergeIntoRulesFile(merged, second, 'rules.v4')).toBe(again);
    expect(prepareMerge(merged, 'rules.v4').render(first)).toBe(merged);
  });
});
