/**
 * What a boot's load of rules.v4 would refuse, read by the daemon at its start: the operator's
 * lines only (ours, named TNAT..., are blanked, their line numbers kept). Real files; targets
 * told by this machine's iptables extensions (skipped where iptables is not installed).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { iptablesBootProblem } from '../../src/system/iptables-boot.js';
import { targetKnownIn, xtablesDirs } from '../../src/system/xtables.js';

const withIptables = targetKnownIn(xtablesDirs(), 4) ? test : test.skip; // no iptables here

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tnat-ipboot-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const RULES = [
  '*filter', // 1
  ':INPUT DROP [0:0]', // 2
  '-A INPUT -j f2b-sshd', // 3
  'COMMIT', // 4
  '*nat', // 5
  ':POSTROUTING ACCEPT [0:0]', // 6
  ':TNAT - [0:0]', // 7
  ':TNAT-10.42.0.0/24 - [0:0]', // 8
  '-A POSTROUTING -j TNAT', // 9
  '-A TNAT -s 10.42.0.0/24 -j TNAT-10.42.0.0/24', // 10
  '-A POSTROUTING -s 10.0.0.0/8 -o eth0 -j MASQUERADE', // 11
  'COMMIT', // 12
  '',
];

withIptables('names the operator jump a boot refuses, with its line in the file', () => {
  const v4 = join(dir, 'rules.v4');
  writeFileSync(v4, RULES.join('\n'));
  const problem = iptablesBootProblem([
    { file: v4, family: 4 },
    { file: join(dir, 'rules.v6'), family: 6 },
  ]);
  expect(problem?.fails).toBe(true);
  expect(problem?.text).toMatch(
    new RegExp(
      `^${v4} would not load at boot: line 3 jumps to f2b-sshd, which is neither a chain of its \\*filter table`,
    ),
  );
});

withIptables(
  'our own chains and jumps are no problem, and a missing rules file is none either',
  () => {
    const v4 = join(dir, 'rules.v4');
    writeFileSync(v4, RULES.filter((line) => !line.includes('f2b')).join('\n'));
    expect(iptablesBootProblem([{ file: v4, family: 4 }])).toBeUndefined();
    expect(iptablesBootProblem([{ file: join(dir, 'none'), family: 4 }])).toBeUndefined();
  },
);

withIptables('rules.v6 is read with the IPv6 extensions', () => {
  const v6 = join(dir, 'rules.v6');
  writeFileSync(
    v6,
    '*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j CLUSTERIP\n-A POSTROUTING -j NETMAP --to 2001:db8::/64\nCOMMIT\n',
  );
  // CLUSTERIP is an IPv4 target only: ip6tables-restore takes it for a chain.
  expect(iptablesBootProblem([{ file: v6, family: 6 }])?.text).toContain(
    'line 3 jumps to CLUSTERIP',
  );
});
