/**
 * The rendered IPv6 text against the real ip6tables-restore and nft, inside a network namespace
 * this test makes and deletes (its only link is a veth pair with both ends inside it), so the
 * host's firewall is never touched.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { renderIp6tablesChains } from '../../src/render/iptables6.js';
import { renderNftTable6 } from '../../src/render/nftables6.js';
import { readPrevious6 } from '../../src/render/read-rules6.js';
import { extractNatPart, mergeIntoRulesFile } from '../../src/render/rules-file.js';
import { readFixture } from './golden.js';
import { prefixMap6, treeMap6 } from './maps6.js';

const options = { outInterface: 'eth0' };
const FILE = '/etc/iptables/rules.v6';

// Making a namespace needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN); CI runs the suite as root.
const describeAsRoot = process.getuid?.() === 0 ? describe : describe.skip;

describeAsRoot('rendered IPv6 rules in a real kernel (network namespace)', () => {
  const namespace = `tn-test6-${randomBytes(4).toString('hex')}`;
  let created = false;

  function inNamespace(command: readonly string[], input?: string): string {
    return execFileSync('ip', ['netns', 'exec', namespace, ...command], {
      input,
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'pipe'],
    });
  }

  beforeAll(() => {
    execFileSync('ip', ['netns', 'add', namespace]);
    created = true;
    inNamespace(['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p']);
  });

  afterAll(() => {
    if (created) execFileSync('ip', ['netns', 'del', namespace]);
  });

  const eduvpn = readFixture('eduvpn3-rules.v6');

  test.each([
    ['port blocks', treeMap6],
    ['prefix mode', prefixMap6],
  ])(
    'ip6tables, %s: the merged rules.v6 passes --test, loads and reads back line for line',
    (_, map) => {
      const ours = renderIp6tablesChains(map(), options);
      const merged = mergeIntoRulesFile(eduvpn, ours, FILE);
      inNamespace(['ip6tables-restore', '--test'], merged);
      inNamespace(['ip6tables-restore'], merged);
      expect(inNamespace(['ip6tables', '-t', 'nat', '-S', 'POSTROUTING']).split('\n')).toEqual([
        '-P POSTROUTING ACCEPT',
        '-A POSTROUTING -o eth0 -j TNAT',
        '-A POSTROUTING -s fc00::/7 -o eth0 -j MASQUERADE',
        '',
      ]);
      const part = extractNatPart(inNamespace(['ip6tables-save', '-t', 'nat']), 'ip6tables-save');
      expect(part.jump).toBe(ours.jump);
      expect(new Map([...part.chains].sort())).toEqual(new Map([...ours.chains].sort()));
    },
  );

  test('a bad rule is refused: the validation can fail', () => {
    const ours = renderIp6tablesChains(treeMap6(), options);
    const broken = mergeIntoRulesFile(eduvpn, ours, FILE).replace(
      '[2001:db8::1]',
      '[2001:db8::zz]',
    );
    expect(() => inNamespace(['ip6tables-restore', '--test'], broken)).toThrow();
  });

  test.each([
    [
      'port blocks',
      treeMap6,
      'ip6 saddr fd87:12::3d meta l4proto udp snat to [2001:db8::1]:4096-5119',
    ],
    ['prefix mode', prefixMap6, 'snat prefix to 2001:db8:100::/56'],
  ])('nft, %s: the table ip6 passes nft -c, loads, loads again over itself', (_, map, listed) => {
    const text = renderNftTable6(map(), options);
    inNamespace(['nft', '-c', '-f', '-'], text);
    inNamespace(['nft', '-f', '-'], text);
    inNamespace(['nft', '-f', '-'], text);
    const table = inNamespace(['nft', 'list', 'table', 'ip6', 'traceable_nat']);
    expect(table).toContain(listed);
    // What nft lists reads back to the bindings rendered (none in prefix mode).
    expect(readPrevious6(table)).toEqual(readPrevious6(text));
    expect(table).toContain('type nat hook postrouting priority srcnat - 10; policy accept;');
  });
});
