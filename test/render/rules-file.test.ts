import { TnatError } from '../../src/errors.js';
import { renderIptablesChains } from '../../src/render/iptables.js';
import {
  diffChains,
  extractNatPart,
  mergeIntoRulesFile,
  parseRulesFile,
  prepareMerge,
  prepareMergeAndExtract,
  type ExtractedNat,
} from '../../src/render/rules-file.js';
import { walkIptables } from '../helpers/packet-walk.js';
import { arrayPortMap, ip } from '../helpers/port-map.js';
import { expectGolden, readFixture } from './golden.js';
import { tinyMap, treeMap } from './maps.js';
import { caught } from '../helpers/caught.js';

const FILE = '/etc/iptables/rules.v4';
const options = { outInterface: 'eth0' };
const eduvpn = readFixture('eduvpn3-rules.v4');
const tree = renderIptablesChains(treeMap(), options);
const tiny = renderIptablesChains(tinyMap(), options);

function isOurs(line: string): boolean {
  return /^(:TNAT[ -]|-A TNAT[ -]|-A POSTROUTING -o \S+ -j TNAT$)/.test(line);
}

function withoutOurs(text: string): string {
  return text
    .split(/(?<=\n)/)
    .filter((line) => !isOurs(line.trimEnd()))
    .join('');
}

describe('mergeIntoRulesFile on the eduVPN 3.x default file', () => {
  const merged = mergeIntoRulesFile(eduvpn, tree, FILE);

  test('matches the golden file', () => {
    expectGolden('tree-merged-eduvpn3.rules.v4', merged);
  });

  test('keeps every other line byte for byte, in order', () => {
    expect(withoutOurs(merged)).toBe(eduvpn);
    const ours = merged.split('\n').filter(isOurs);
    const rules = [...tree.chains.values()].flat();
    expect(ours).toHaveLength(tree.chains.size + 1 + rules.length);
  });

  test('puts the jump right before the MASQUERADE rules and our chains after the others', () => {
    const lines = merged.split('\n');
    const jump = lines.indexOf('-A POSTROUTING -o eth0 -j TNAT');
    const masquerade = lines.findIndex((line) => line.includes('-j MASQUERADE'));
    expect(jump).toBe(masquerade - 1);
    expect(lines.indexOf(':TNAT - [0:0]')).toBe(
      lines.indexOf(':POSTROUTING ACCEPT [201:14211]') + 1,
    );
    expect(lines[lines.lastIndexOf('COMMIT') - 1]).toMatch(/^-A TNAT-10\.43\.7\.0\/28 .*-j SNAT/);
  });

  test.each([
    ['10.42.0.35', 'tcp', 'eth0', { action: 'SNAT', toSource: '198.51.100.7:59392-61439' }],
    ['10.42.0.35', 'icmp', 'eth0', { action: 'SNAT', toSource: '198.51.100.7' }],
    ['10.42.0.42', 'tcp', 'eth0', { action: 'MASQUERADE' }],
    ['10.60.0.2', 'udp', 'eth0', { action: 'MASQUERADE' }],
    ['192.168.1.9', 'icmp', 'eth0', { action: 'MASQUERADE' }],
    ['10.42.0.35', 'tcp', 'wg0', { action: 'ACCEPT' }],
  ] as const)('sends %s (%s, out %s) to %o', (src, proto, out, result) => {
    expect(walkIptables(merged, { src, proto, out })).toMatchObject(result);
  });

  test('gives the same file when merged again', () => {
    expect(mergeIntoRulesFile(merged, tree, FILE)).toBe(merged);
  });

  test('changes only our lines when the map changes', () => {
    const again = mergeIntoRulesFile(merged, tiny, FILE);
    expect(again).toBe(mergeIntoRulesFile(eduvpn, tiny, FILE));
    expect(withoutOurs(again)).toBe(eduvpn);
    expect(again).not.toContain('TNAT-10.42.0.0/24');
    expect(again).toContain('-A TNAT -s 10.42.0.4/32 -j SNAT --to-source 192.0.2.1\nCOMMIT\n');
  });

  test('keeps CRLF line endings and ends with one', () => {
    const crlf = eduvpn.replaceAll('\n', '\r\n');
    const result = mergeIntoRulesFile(crlf, tree, FILE);
    expect(result).toBe(merged.replaceAll('\n', '\r\n'));
  });

  test('ends a file without a final newline with one', () => {
    expect(mergeIntoRulesFile(eduvpn.trimEnd(), tree, FILE)).toBe(merged);
  });
});

describe('mergeIntoRulesFile: where the jump goes', () => {
  const nat = (postrouting: string[]) =>
    ['*nat', ':POSTROUTING ACCEPT [0:0]', ...postrouting, 'COMMIT', ''].join('\n');
  const jump = '-A POSTROUTING -o eth0 -j TNAT';
  const ipsec = '-A POSTROUTING -o eth0 -m policy --dir out --pol ipsec -j ACCEPT';
  const masquerade = '-A POSTROUTING -s 10.0.0.0/8 -o eth0 -j MASQUERADE';
  const snat = '-A POSTROUTING -s 10.0.0.0/8 -o eth0 -j SNAT --to-source 192.0.2.9';

  test.each([
    ['before the first MASQUERADE', [ipsec, masquerade], [ipsec, jump, masquerade]],
    ['before the first SNAT', [snat, masquerade], [jump, snat, masquerade]],
    [
      'kept where it already precedes the NAT rules',
      [jump, ipsec, masquerade],
      [jump, ipsec, masquerade],
    ],
    ['moved when it follows a NAT rule', [masquerade, jump], [jump, masquerade]],
    [
      'replaced when the interface changed',
      [ipsec, '-A POSTROUTING -o ens3 -j TNAT', masquerade],
      [ipsec, jump, masquerade],
    ],
    ['after the last POSTROUTING rule without NAT rules', [ipsec], [ipsec, jump]],
    ['once, when the old jump was there twice', [jump, jump, masquerade], [jump, masquerade]],
    ['first when POSTROUTING is empty', [], [jump]],
  ])('%s', (_, before, after) => {
    const result = mergeIntoRulesFile(nat(before), tiny, FILE).split('\n');
    expect(result.filter((line) => line.startsWith('-A POSTROUTING'))).toEqual(after);
  });
});

describe('mergeIntoRulesFile without a *nat table', () => {
  const natTable = [
    '*nat',
    ':PREROUTING ACCEPT [0:0]',
    ':INPUT ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':POSTROUTING ACCEPT [0:0]',
    ':TNAT - [0:0]',
    '-A POSTROUTING -o eth0 -j TNAT',
    ...(tiny.chains.get('TNAT') ?? []),
    'COMMIT',
    '',
  ].join('\n');

  test.each([
    ['no file', undefined],
    ['an empty file', ''],
  ])('writes only our *nat table for %s', (_, current) => {
    expect(mergeIntoRulesFile(current, tiny, FILE)).toBe(natTable);
  });

  test('appends it after the other tables', () => {
    const filter = '# only filter\n*filter\n:INPUT DROP [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n';
    expect(mergeIntoRulesFile(filter, tiny, FILE)).toBe(filter + natTable);
  });
});

describe('parseRulesFile', () => {
  test('reads tables, chains and rules with their line numbers', () => {
    const parsed = parseRulesFile(eduvpn, FILE);
    expect([...parsed.tables.keys()]).toEqual(['mangle', 'filter', 'nat']);
    const nat = parsed.tables.get('nat');
    expect(nat).toMatchObject({ line: 29, commitLine: 37 });
    expect(nat?.chains.get('POSTROUTING')).toEqual({
      name: 'POSTROUTING',
      policy: 'ACCEPT',
      counters: '[201:14211]',
      line: 33,
    });
    expect(nat?.rules[0]).toEqual({
      chain: 'POSTROUTING',
      text: '-A POSTROUTING -s 10.0.0.0/8 -o eth0 -j MASQUERADE',
      target: 'MASQUERADE',
      line: 34,
    });
    expect(parsed.lineEnding).toBe('\n');
  });

  test('reads rules with packet counters and quoted comments', () => {
    const text =
      '*nat\n:X - [0:0]\n[12:3400] -A X -m comment --comment "a -j SNAT b" -j RETURN\nCOMMIT\n';
    expect(parseRulesFile(text, FILE).tables.get('nat')?.rules).toEqual([
      {
        chain: 'X',
        text: '-A X -m comment --comment "a -j SNAT b" -j RETURN',
        target: 'RETURN',
        line: 3,
      },
    ]);
  });

  test.each([
    ['a rule outside a table', '-A INPUT -j ACCEPT\n', 1, /rule line outside a table/],
    ['a chain outside a table', '# x\n:INPUT ACCEPT [0:0]\n', 2, /chain line outside a table/],
    [
      'a table without COMMIT at the end',
      '*nat\n:POSTROUTING ACCEPT [0:0]\n',
      1,
      /table nat has no COMMIT/,
    ],
    [
      'a table without COMMIT before the next',
      '*nat\n*filter\nCOMMIT\n',
      2,
      /table nat \(line 1\) has no COMMIT/,
    ],
    ['COMMIT outside a table', '*nat\nCOMMIT\nCOMMIT\n', 3, /COMMIT outside a table/],
    [
      'a line of something else',
      '*nat\niptables -t nat -A X\nCOMMIT\n',
      2,
      /neither a comment.*: fix or remove it/,
    ],
    [
      'a byte order mark',
      '\ufeff*nat\nCOMMIT\n',
      1,
      /starts with a byte order mark .*: save it without one/,
    ],
    ['a broken chain line', '*nat\n:POSTROUTING\nCOMMIT\n', 2, /not a chain line/],
    ['a table twice', '*nat\nCOMMIT\n*nat\nCOMMIT\n', 3, /appears twice/],
  ])('refuses %s with E_RULES_FILE, file and line', (_, text, line, message) => {
    for (const run of [
      () => parseRulesFile(text, FILE),
      () => mergeIntoRulesFile(text, tiny, FILE),
    ]) {
      const error = caught(run);
      expect(error).toBeInstanceOf(TnatError);
      expect(error).toMatchObject({ code: 'E_RULES_FILE', where: { file: FILE, line } });
      expect((error as Error).message).toMatch(message);
      expect((error as Error).message.startsWith(`${FILE}:${line}: `)).toBe(true);
    }
  });
});

describe('extractNatPart and diffChains', () => {
  test('read back exactly what was merged', () => {
    const part = extractNatPart(mergeIntoRulesFile(eduvpn, tree, FILE));
    expect(part.jump).toBe(tree.jump);
    expect([...part.chains]).toEqual([...tree.chains]);
  });

  test('ignore packet counters (iptables-save -c)', () => {
    const counted = mergeIntoRulesFile(eduvpn, tiny, FILE).replace(
      /^-A TNAT /gm,
      '[7:420] -A TNAT ',
    );
    expect([...extractNatPart(counted).chains]).toEqual([...tiny.chains]);
  });

  test('from one parse, the same template and part as prepareMerge and extractNatPart', () => {
    for (const text of [mergeIntoRulesFile(eduvpn, tree, FILE), eduvpn, '']) {
      const { template, ours } = prepareMergeAndExtract(text, FILE);
      const { rulesText, ...part } = ours;
      expect(part).toEqual(extractNatPart(text, FILE));
      // Our rules as one run of the file's text, when the merge wrote them.
      expect(rulesText).toBe(text === '' || text === eduvpn ? undefined : tree.rulesText);
      for (const next of [tiny, tree])
        expect(template.render(next)).toBe(prepareMerge(text, FILE).render(next));
    }
    expect(() => prepareMergeAndExtract('*nat\n-A\n', FILE)).toThrow(TnatError);
  });

  test('the scan that takes our lines out agrees with the full parse, whatever else the file holds', () => {
    const merged = mergeIntoRulesFile(eduvpn, tree, FILE);
    const lines = merged.split('\n');
    const ourRule = lines.findIndex((line) => line.startsWith('-A TNAT-'));
    const ourDeclaration = lines.findIndex((line) => line.startsWith(':TNAT-'));
    // The COMMIT that closes *nat.
    const commit = lines.indexOf('COMMIT', lines.indexOf('*nat'));
    const edit = (change: (copy: string[]) => void) => {
      const copy = [...lines];
      change(copy);
      return copy.join('\n');
    };
    const variants = {
      merged,
      crlf: merged.replaceAll('\n', '\r\n'),
      noFinalNewline: merged.trimEnd(),
      counted: merged.replace(/^-A TNAT-/m, '[3:180] -A TNAT-'),
      longForm: merged.replace(/^-A TNAT-/m, '--append TNAT-'),
      countedDeclaration: merged.replace(/^(:TNAT-\S+) - \[0:0\]$/m, '$1 - [5:300]'),
      undeclared: edit((copy) => copy.splice(ourDeclaration, 1)),
      canarySaved: merged.replace('*nat\n', '*nat\n:TNAT_APPLIED - [0:0]\n'),
      canaryRule: edit((copy) =>
        copy.splice(commit, 0, '-A TNAT_APPLIED -m comment --comment sha256:00'),
      ),
      afterCommit: edit((copy) => copy.splice(commit + 1, 0, copy[ourRule] ?? '')),
      // A chain declared again between its own rules.
      redeclared: edit((copy) =>
        copy.splice(ourRule + 2, 0, `:${(copy[ourRule] ?? '').split(' ')[1] ?? ''} - [0:0]`),
      ),
      inFilter: `*filter\n:TNAT-x - [0:0]\n-A TNAT-x -j ACCEPT\nCOMMIT\n${merged}`,
      badLine: edit((copy) => copy.splice(ourRule + 2, 0, 'this is no rule')),
      eduvpnOnly: eduvpn,
      empty: '',
    };
    const runs: string[] = [];
    let current = '';
    const outcome = (
      run: () => { template: { render: (n: typeof tree) => string }; ours: unknown },
    ) => {
      try {
        const { template, ours } = run();
        const { rulesText, ...part } = ours as ExtractedNat;
        // When the scan gives our rules as text, it is exactly their lines in order.
        if (rulesText !== undefined) {
          const lines = [...part.chains.values()].flat();
          expect(rulesText).toBe(lines.map((line) => `${line}\n`).join(''));
          runs.push(current);
        }
        return { ours: part, renders: [tiny, tree].map((next) => template.render(next)) };
      } catch (error) {
        return { error: String(error), where: (error as TnatError).where };
      }
    };
    for (const [name, text] of Object.entries(variants)) {
      current = name;
      const fast = outcome(() => prepareMergeAndExtract(text, FILE));
      const full = outcome(() => ({
        template: prepareMerge(text, FILE),
        ours: extractNatPart(text, FILE),
      }));
      expect({ name, ...fast }).toEqual({ name, ...full });
    }
    // Only where the merge's run of our rules is intact, in LF, and the scan alone read it.
    expect(runs).toEqual(['merged', 'noFinalNewline']);
  });

  test('find nothing in a file without our part', () => {
    expect(extractNatPart(eduvpn)).toEqual({ chains: new Map(), jump: undefined });
    expect(extractNatPart('')).toEqual({ chains: new Map(), jump: undefined });
  });

  test('name the one leaf that changed when one client moves', () => {
    const moved = [...treeMap().assignments()].map((entry) =>
      entry.client === ip('10.42.0.20') ? { ...entry, firstPort: 1024, lastPort: 3071 } : entry,
    );
    const after = renderIptablesChains(arrayPortMap(moved, 2048), options);
    expect(diffChains(tree.chains, after.chains)).toEqual({
      changed: ['TNAT-10.42.0.16/28'],
      removed: [],
      added: [],
    });
  });

  test('name added and removed chains', () => {
    expect(diffChains(tiny.chains, tree.chains)).toEqual({
      changed: ['TNAT'],
      removed: [],
      added: [...tree.chains.keys()].slice(1),
    });
    expect(diffChains(tree.chains, tiny.chains)).toEqual({
      changed: ['TNAT'],
      removed: [...tree.chains.keys()].slice(1),
      added: [],
    });
  });
});

describe('the kernel canary in a rules file', () => {
  test('a kernel saved into the file brings TNAT_APPLIED along; the merge drops it', () => {
    const canary = [
      ':TNAT_APPLIED - [0:0]',
      `-A TNAT_APPLIED -m comment --comment sha256:${'c'.repeat(64)}`,
    ];
    const saved = mergeIntoRulesFile(eduvpn, tiny, FILE).replace(
      /\nCOMMIT\n(?![\s\S]*\nCOMMIT\n)/,
      `\n${canary.join('\n')}\nCOMMIT\n`,
    );
    expect(saved).toContain(canary[1]);
    const merged = mergeIntoRulesFile(saved, tiny, FILE);
    expect(merged).not.toContain('TNAT_APPLIED');
    expect(merged).toBe(mergeIntoRulesFile(eduvpn, tiny, FILE));
    expect([...extractNatPart(saved, FILE).chains.keys()]).not.toContain('TNAT_APPLIED');
  });
});
