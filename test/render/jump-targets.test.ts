/**
 * A jump to a chain the rules file does not declare: `iptables-restore --test` passes it and a
 * boot's load refuses the whole file (Chain 'X' does not exist). The targets are told from
 * chains by this machine's own iptables extensions (skipped where iptables is not installed:
 * the check then says nothing of targets, which the last test shows).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { danglingJumps } from '../../src/render/jump-targets.js';
import { targetKnownIn, xtablesDirs } from '../../src/system/xtables.js';

const dirs = xtablesDirs({});
const known4 = targetKnownIn(dirs, 4);
const known6 = targetKnownIn(dirs, 6);
const withIptables = known4 && known6 ? test : test.skip; // no iptables extensions installed

const FILE = [
  '*filter', // 1
  ':INPUT DROP [0:0]', // 2
  ':FORWARD DROP [0:0]', // 3
  ':OUTPUT ACCEPT [0:0]', // 4
  ':operator-in - [0:0]', // 5
  '-A INPUT -j operator-in', // 6
  '-A INPUT -p tcp --dport 22 -j ACCEPT', // 7
  '-A INPUT -m comment --comment "was -j gone-chain" -j LOG --log-prefix "in "', // 8
  '-A INPUT -j REJECT --reject-with icmp-port-unreachable', // 9
  '-A FORWARD -g fail2ban-ssh', // 10
  '-N late', // 11
  '-A FORWARD -j late', // 12
  '-A operator-in -j RETURN', // 13
  'COMMIT', // 14
  '*nat', // 15
  ':POSTROUTING ACCEPT [0:0]', // 16
  '-A POSTROUTING -o eth0 -j MASQUERADE', // 17
  '-A POSTROUTING -s 10.0.0.0/8 -j SNAT --to-source 192.0.2.1', // 18
  '-A POSTROUTING -j operator-in', // 19
  'COMMIT', // 20
  '',
].join('\n');

withIptables(
  'names every rule that jumps to a chain its table lacks, and no target or chain it has',
  () => {
    expect(danglingJumps(FILE, 'rules.v4', known4 ?? (() => true))).toEqual([
      { line: 10, table: 'filter', target: 'fail2ban-ssh' },
      // operator-in is a chain of *filter only.
      { line: 19, table: 'nat', target: 'operator-in' },
    ]);
  },
);

withIptables('IPv6 knows its own extensions: NETMAP and REJECT are ip6tables targets too', () => {
  const text = [
    '*nat',
    ':POSTROUTING ACCEPT [0:0]',
    '-A POSTROUTING -s fd00::/64 -j NETMAP --to 2001:db8::/64',
    '-A POSTROUTING -j NoSuchTarget',
    'COMMIT',
    '',
  ].join('\n');
  expect(danglingJumps(text, 'rules.v6', known6 ?? (() => true))).toEqual([
    { line: 4, table: 'nat', target: 'NoSuchTarget' },
  ]);
  // CLUSTERIP is an IPv4 target only (libipt_CLUSTERIP).
  expect(known4?.('CLUSTERIP')).toBe(true);
  expect(known6?.('CLUSTERIP')).toBe(false);
});

test('XTABLES_LIBDIR names the extension directories, as iptables reads it; none found: no judgement', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tnat-xtables-'));
  try {
    writeFileSync(join(dir, 'libxt_standard.so'), '');
    writeFileSync(join(dir, 'libxt_ONLYHERE.so'), '');
    const found = xtablesDirs({ XTABLES_LIBDIR: `${dir}:` });
    expect(found).toEqual([dir]);
    const known = targetKnownIn(found, 4);
    expect(known?.('ONLYHERE')).toBe(true);
    expect(known?.('SNAT')).toBe(false);
    expect(targetKnownIn([], 4)).toBeUndefined();
  } finally {
    rmSync(dir, { recursive: true });
  }
});
