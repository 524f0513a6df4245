/**
 * An operator's own nat chain that our merge would take for ours (found by an audit: a chain
 * named TNAT-mine was dropped from rules.v4 while the operator's jump to it stayed, a file
 * iptables-restore refuses whole at the next boot, filter table included). The merge refuses
 * such a file, naming the line, and the apply leaves everything as it was.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { applyRuleset } from '../../src/apply/apply.js';
import { discover } from '../../src/cli/discovery.js';
import { loadConfig } from '../../src/config-file.js';
import { TnatError } from '../../src/errors.js';
import { chainName6 } from '../../src/render/iptables6.js';
import { renderIptablesChains } from '../../src/render/iptables.js';
import {
  mergeIntoRulesFile,
  prepareMerge,
  prepareMergeAndExtract,
} from '../../src/render/rules-file.js';
import { FakeNatTable } from '../helpers/fake-nat-table.js';
import { ALPHA, BETA } from '../helpers/profiles.js';
import { createSandbox } from '../helpers/sandbox.js';
import { SteppingClock } from '../helpers/stepping-clock.js';
import { treeMap } from './maps.js';
import { caught } from '../helpers/caught.js';

const FILE = '/etc/iptables/rules.v4';
const tree = renderIptablesChains(treeMap(), { outInterface: 'eth0' });

function natTable(lines: readonly string[]): string {
  const head = ['*filter', ':INPUT DROP [0:0]', '-A INPUT -i lo -j ACCEPT', 'COMMIT', '*nat'];
  const builtin = ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'].map((c) => `:${c} ACCEPT [0:0]`);
  return [...head, ...builtin, ...lines, 'COMMIT', ''].join('\n');
}

describe('a rules file whose nat table uses our names for its own', () => {
  test.each([
    [
      'a chain named with our prefix',
      [
        ':TNAT-mine - [0:0]',
        '-A POSTROUTING -s 10.99.0.0/16 -j TNAT-mine',
        '-A TNAT-mine -o eth1 -j MASQUERADE',
      ],
      10,
      /chain TNAT-mine has traceable-nat's name prefix TNAT- but is not one of its chains.*rename it/,
    ],
    [
      'a chain named like an IPv4 chain of ours but not aligned',
      [':TNAT-10.0.0.1/8 - [0:0]', '-A TNAT-10.0.0.1/8 -j MASQUERADE'],
      10,
      /chain TNAT-10\.0\.0\.1\/8 .* not one of its chains/,
    ],
    [
      'a rule of the operator jumping into our tree',
      [':MINE - [0:0]', ':TNAT - [0:0]', '-A MINE -j TNAT', '-A POSTROUTING -o eth0 -j TNAT'],
      12,
      /this rule of chain MINE jumps to TNAT, a chain traceable-nat rewrites on every apply/,
    ],
    [
      'a rule of the operator going to our canary chain',
      ['-A POSTROUTING -o eth1 -g TNAT_APPLIED'],
      10,
      /jumps to TNAT_APPLIED/,
    ],
  ])('refuses %s with E_RULES_FILE and its line, on every path', (_, lines, line, message) => {
    const text = natTable(lines);
    for (const run of [
      () => prepareMerge(text, FILE),
      () => prepareMergeAndExtract(text, FILE),
      () => mergeIntoRulesFile(text, tree, FILE),
    ]) {
      const error = caught(run);
      expect(error).toBeInstanceOf(TnatError);
      expect(error).toMatchObject({ code: 'E_RULES_FILE', where: { file: FILE, line } });
      expect((error as Error).message).toMatch(message);
    }
  });

  test('takes every name we give, IPv4 and IPv6, and our own jump, as ours', () => {
    const v6 = chainName6(0xfd42n << 112n, 112);
    const text = natTable([
      ':TNAT - [0:0]',
      ':TNAT-10.42.0.0/16 - [0:0]',
      `:${v6} - [0:0]`,
      '-A POSTROUTING -o eth0 -j TNAT',
      '-A TNAT -s 10.42.0.0/16 -j TNAT-10.42.0.0/16',
      `-A TNAT -j ${v6}`,
    ]);
    const { ours } = prepareMergeAndExtract(text, FILE);
    expect([...ours.chains.keys()]).toEqual(['TNAT', 'TNAT-10.42.0.0/16', v6]);
    // A merge of another tree over it leaves none of the old chains behind.
    const merged = mergeIntoRulesFile(text, tree, FILE);
    expect(merged).not.toContain(v6);
    expect(merged).toContain('-A INPUT -i lo -j ACCEPT');
  });
});

test('an apply over such a rules file changes nothing and names the line', async () => {
  const sandbox = createSandbox('iptables');
  try {
    sandbox.writeProfiles([ALPHA, BETA]);
    sandbox.writeConfig();
    const text = natTable([':TNAT-mine - [0:0]', '-A POSTROUTING -s 10.99.0.0/16 -j TNAT-mine']);
    writeFileSync(sandbox.rulesFile, text);
    const table = new FakeNatTable();
    const before = table.save();
    const clock = new SteppingClock(Date.parse('2026-12-05T12:00:00Z'));
    const config = loadConfig(sandbox.configFile);
    const error = await applyRuleset(config, { runner: table, clock, discover }).catch(
      (caughtError: unknown) => caughtError,
    );
    expect(error).toMatchObject({ code: 'E_RULES_FILE', where: { line: 10 } });
    expect(readFileSync(sandbox.rulesFile, 'utf8')).toBe(text);
    expect(table.save()).toBe(before);
    const archives = existsSync(sandbox.archiveDir) ? readdirSync(sandbox.archiveDir) : [];
    expect(archives.filter((name) => name.startsWith('rules'))).toEqual([]);
  } finally {
    sandbox.remove();
  }
});

test('an apply over a kernel that holds such a chain changes nothing and says how to rename it', async () => {
  const sandbox = createSandbox('iptables');
  try {
    sandbox.writeProfiles([ALPHA, BETA]);
    sandbox.writeConfig();
    const table = new FakeNatTable();
    table.load(
      '*nat\n:TNAT-mine - [0:0]\n-A POSTROUTING -s 10.99.0.0/16 -j TNAT-mine\n-A TNAT-mine -o eth1 -j MASQUERADE\nCOMMIT\n',
    );
    const before = table.save();
    const clock = new SteppingClock(Date.parse('2026-12-05T12:00:00Z'));
    const config = loadConfig(sandbox.configFile);
    const error = await applyRuleset(config, { runner: table, clock, discover }).catch(
      (caughtError: unknown) => caughtError,
    );
    expect(error).toMatchObject({ code: 'E_RULES_FILE' });
    expect((error as Error).message).toMatch(
      /the kernel.s nat table holds a chain TNAT-mine, .*\(iptables -t nat -E TNAT-mine NEWNAME/,
    );
    expect(table.save()).toBe(before);
    expect(existsSync(sandbox.rulesFile)).toBe(false);
  } finally {
    sandbox.remove();
  }
});
