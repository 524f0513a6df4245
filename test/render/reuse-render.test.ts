/**
 * The iptables render that reuses an earlier render's unchanged subtrees (issue 13) must give
 * exactly what a render from scratch gives, whatever the earlier render was: checked on random
 * sequences of profile changes (pools added, removed, resized, mapped with stability as an
 * apply maps them) and of odd edits (clients moved, rebound, repeated), chained so that each
 * render reuses the one before, as the daemon's applies do.
 */
import fc from 'fast-check';
import type { ClientPool } from '../../src/eduvpn/pool.js';
import { mapClients } from '../../src/mapping/map.js';
import { assignmentColumns } from '../../src/mapping/columns.js';
import type { NatSettings, PortMap } from '../../src/mapping/types.js';
import { formatCidr4 } from '../../src/net/ipv4.js';
import {
  chainsFromLayout,
  layoutOfRulesFile,
  rulesRunIn,
  renderFormat,
  renderFormatSample,
  renderIptablesChains,
  type IptablesNat,
} from '../../src/render/iptables.js';
import { renderNftTableReusing, type NftRender } from '../../src/render/nftables.js';
import { prepareMerge, prepareMergeAndExtract } from '../../src/render/rules-file.js';
import { readFixture } from './golden.js';
import { arrayPortMap, type PlainAssignment } from '../helpers/port-map.js';
import { ip, poolOf } from '../mapping/fixtures.js';
import { slash16Map } from './maps.js';

const options = { outInterface: 'eth0' };

const SETTINGS: NatSettings = {
  publicAddresses: Array.from({ length: 7 }, (_, i) => ip('198.18.0.1') + i),
  portRange: { first: 1024, last: 65535 },
  excludePorts: [],
  portsPerClient: 'auto',
  minPortsPerClient: 16,
};

function expectSameAsScratch(reused: IptablesNat, map: PortMap): void {
  const scratch = renderIptablesChains(map, options);
  expect([...reused.chains.keys()]).toEqual([...scratch.chains.keys()]);
  expect([...reused.chains]).toEqual([...scratch.chains]);
  expect(reused.rulesText).toBe(scratch.rulesText);
  expect(reused.layout?.textStart.at(-1)).toBe(scratch.rulesText?.length);
}

/** A profile: one of 64 /22 cells of 10.64/16, with a prefix from /22 to /30. */
const poolArb = fc.record({
  cell: fc.integer({ min: 0, max: 63 }),
  prefix: fc.integer({ min: 22, max: 30 }),
});

function poolsOf(cells: ReadonlyMap<number, number>): ClientPool[] {
  return [...cells].map(([cell, prefix]) =>
    poolOf(`p${cell}`, formatCidr4({ network: ip('10.64.0.0') + cell * 1024, prefix })),
  );
}

/**
 * Random profile sequences as the maps an apply makes of them, each with the stability of the
 * one before: a number removes that profile (when there), a pool adds or resizes one.
 */
function profileSequenceArb(maxSteps: number): fc.Arbitrary<PortMap[]> {
  return fc
    .tuple(
      fc.array(poolArb, { minLength: 1, maxLength: 6 }),
      fc.array(fc.oneof(poolArb, fc.integer({ min: 0, max: 63 })), {
        minLength: 1,
        maxLength: maxSteps,
      }),
    )
    .map(([start, steps]) => {
      const cells = new Map(start.map(({ cell, prefix }) => [cell, prefix]));
      const maps = [mapClients(poolsOf(cells), SETTINGS, undefined)];
      for (const step of steps) {
        if (typeof step === 'number') cells.delete(step);
        else cells.set(step.cell, step.prefix);
        const before = maps.at(-1);
        maps.push(
          mapClients(
            poolsOf(cells),
            SETTINGS,
            before && { blockSize: before.blockSize, bindings: assignmentColumns(before) },
          ),
        );
      }
      return maps;
    });
}

/**
 * Random chained profile sequences, each render reusing what `keep` made of the one before (as
 * the daemon keeps it between applies): every render equals a render from scratch.
 */
function expectChainedReuseExact(keep: (nat: IptablesNat) => IptablesNat): void {
  fc.assert(
    fc.property(profileSequenceArb(6), ([first, ...rest]) => {
      if (!first) throw new Error('no map');
      let previous = keep(renderIptablesChains(first, options));
      for (const map of rest) {
        const reused = renderIptablesChains(map, options, previous);
        expectSameAsScratch(reused, map);
        previous = keep(reused);
      }
    }),
    { numRuns: 40 },
  );
}

/** The rows of a map as a plain list, to edit. */
function listOf(map: PortMap): PlainAssignment[] {
  const rows = assignmentColumns(map);
  const list: PlainAssignment[] = [];
  for (let row = 0; row < rows.count; row++) {
    list.push({
      client: rows.client[row] ?? 0,
      publicAddress: rows.publicAddresses[rows.publicIndex[row] ?? 0] ?? 0,
      firstPort: rows.firstPort[row] ?? 0,
      lastPort: rows.lastPort[row] ?? 0,
    });
  }
  return list;
}

/** A random edit of a plain list: a client added, one removed, one bound elsewhere. */
type Edit =
  | { readonly add: PlainAssignment }
  | { readonly remove: number }
  | { readonly rebind: number; readonly to: PlainAssignment };

function editArb(plain: fc.Arbitrary<PlainAssignment>): fc.Arbitrary<Edit> {
  return fc.oneof(
    fc.record({ add: plain }),
    fc.record({ remove: fc.nat() }),
    fc.record({ rebind: fc.nat(), to: plain }),
  );
}

/** `list` after `edit`, as a new list. */
function edited(list: readonly PlainAssignment[], edit: Edit): PlainAssignment[] {
  const next = [...list];
  if ('add' in edit) next.push(edit.add);
  else if ('remove' in edit) next.splice(edit.remove % (next.length || 1), 1);
  else if (next.length > 0) {
    const at = edit.rebind % next.length;
    const old = next[at];
    if (old) next[at] = { ...edit.to, client: old.client };
  }
  return next;
}

/**
 * Applies `edits` to `start` one by one and renders each list reusing the render before it
 * (the first being `first`), as the daemon's applies do; `check` compares each with scratch.
 */
function renderChained<R>(
  start: readonly PlainAssignment[],
  edits: readonly Edit[],
  first: R,
  render: (map: PortMap, previous: R) => R,
  check: (reused: R, map: PortMap) => void,
): void {
  let list = [...start];
  let previous = first;
  for (const edit of edits) {
    list = edited(list, edit);
    const map = arrayPortMap(list, 64);
    const reused = render(map, previous);
    check(reused, map);
    previous = reused;
  }
}

/** Every form a rule of ours takes. */
const RULE_FORMS = {
  jump: /^-A TNAT(-\S+)? -s \S+\/\d+ -j TNAT-\S+$/,
  tcpRange: /^-A \S+ -s \S+\/32 -p tcp -j SNAT --to-source [\d.]+:\d+-\d+$/,
  udpRange: /^-A \S+ -s \S+\/32 -p udp -j SNAT --to-source [\d.]+:\d+-\d+$/,
  onePort: /^-A \S+ -s \S+\/32 -p (tcp|udp) -j SNAT --to-source [\d.]+:\d+$/,
  tcpReturn: /^-A \S+ -p tcp -j RETURN$/,
  udpReturn: /^-A \S+ -p udp -j RETURN$/,
  shared: /^-A \S+ -j SNAT --to-source [\d.]+$/,
  perClient: /^-A \S+ -s \S+\/32 -j SNAT --to-source [\d.]+$/,
};

/** The forms of RULE_FORMS that no rule of `rules` takes, and the rules that take none. */
function formsOf(rules: readonly string[]) {
  const forms = Object.entries(RULE_FORMS);
  return {
    unused: forms
      .filter(([, form]) => !rules.some((rule) => form.test(rule)))
      .map(([name]) => name),
    other: rules.filter((rule) => !forms.some(([, form]) => form.test(rule))),
  };
}

describe('a render reusing the one before it equals a render from scratch', () => {
  test('on random sequences of profile changes, mapped with stability', () => {
    fc.assert(
      fc.property(profileSequenceArb(8), ([first, ...rest]) => {
        if (!first) throw new Error('no map');
        let previous = renderIptablesChains(first, options);
        for (const map of rest) {
          const reused = renderIptablesChains(map, options, previous);
          expectSameAsScratch(reused, map);
          previous = reused;
        }
      }),
      { numRuns: 60 },
    );
  });

  /** Clients of one /23, so that leaves, their parents and the root all change and stay. */
  const plainArb: fc.Arbitrary<PlainAssignment> = fc
    .record({
      client: fc.integer({ min: ip('10.42.0.0'), max: ip('10.42.1.255') }),
      publicAddress: fc.constantFrom(ip('192.0.2.1'), ip('198.51.100.7')),
      block: fc.constantFrom([1024, 1087], [2048, 2048]),
    })
    .map(({ block: [firstPort, lastPort], ...rest }) => ({ ...rest, firstPort, lastPort }));

  test('on random edits of odd maps (repeated clients, one-port blocks)', () => {
    fc.assert(
      fc.property(
        fc.array(plainArb, { maxLength: 200 }),
        fc.array(editArb(plainArb), { minLength: 1, maxLength: 12 }),
        (start, edits) => {
          renderChained(
            start,
            edits,
            renderIptablesChains(arrayPortMap(start, 64), options),
            (map, previous) => renderIptablesChains(map, options, previous),
            expectSameAsScratch,
          );
        },
      ),
      { numRuns: 100 },
    );
  });

  /** The chains of `after` that it did not take from `before`. */
  function written(after: IptablesNat, before: IptablesNat): [string, readonly string[]][] {
    return [...after.chains].filter(([name, rules]) => before.chains.get(name) !== rules);
  }

  test('one-client changes of a /16 write only the chains on that client path', () => {
    const before = slash16Map();
    const rendered = renderIptablesChains(before, options);
    const list = listOf(before);
    // One client in the middle moves to another block.
    const middle = list[list.length >> 1];
    if (!middle) throw new Error('the /16 map is empty');
    list[list.length >> 1] = { ...middle, firstPort: 1024, lastPort: 1024 };
    const after = arrayPortMap(list, before.blockSize);
    const reused = renderIptablesChains(after, options, rendered);
    expectSameAsScratch(reused, after);
    const changed = written(reused, rendered);
    // The root, one chain per level below it, and the client's leaf.
    expect(changed.length).toBeGreaterThan(0);
    expect(changed.length).toBeLessThanOrEqual(5);
    expect(changed.some(([, rules]) => rules.some((rule) => rule.includes(':1024')))).toBe(true);

    // A client added before all others shifts every row; the next change still reuses.
    list.unshift({
      client: ip('10.41.255.254'),
      publicAddress: ip('198.51.100.1'),
      firstPort: middle.firstPort,
      lastPort: middle.lastPort,
    });
    const shifted = arrayPortMap(list, before.blockSize);
    const afterShift = renderIptablesChains(shifted, options, reused);
    expectSameAsScratch(afterShift, shifted);
    const last = list.at(-1);
    if (!last) throw new Error('the /16 map is empty');
    list[list.length - 1] = { ...last, firstPort: 2048, lastPort: 2048 };
    const lastChanged = arrayPortMap(list, before.blockSize);
    const again = renderIptablesChains(lastChanged, options, afterShift);
    expectSameAsScratch(again, lastChanged);
    expect(written(again, afterShift).length).toBeLessThanOrEqual(5);
  });

  test('a long run of reuses starts over past its piece limit and stays exact', () => {
    const list: PlainAssignment[] = Array.from({ length: 600 }, (_, i) => ({
      client: ip('10.42.0.0') + i * 3,
      publicAddress: ip('192.0.2.1'),
      firstPort: 1024 + (i % 64) * 16,
      lastPort: 1039 + (i % 64) * 16,
    }));
    let previous = renderIptablesChains(arrayPortMap(list, 16), options);
    let mostPieces = 0;
    let startedOver = false;
    for (let step = 0; step < 400; step++) {
      // Far-apart clients, so that each change splits the reused text once more.
      const at = (step * 149) % list.length;
      const old = list[at];
      if (!old) throw new Error('no client');
      list[at] = { ...old, firstPort: 60000 + step, lastPort: 60000 + step };
      const map = arrayPortMap(list, 16);
      const reused = renderIptablesChains(map, options, previous);
      const pieces = reused.layout?.pieces.length ?? 0;
      if (pieces < (previous.layout?.pieces.length ?? 0)) startedOver = true;
      mostPieces = Math.max(mostPieces, pieces);
      if (step % 50 === 0) expectSameAsScratch(reused, map);
      previous = reused;
    }
    expectSameAsScratch(previous, arrayPortMap(list, 16));
    expect(startedOver).toBe(true);
    expect(mostPieces).toBeLessThan(300);
  });

  test('from a rules file our merge wrote: its layout, reused, equals a render from scratch', () => {
    const eduvpn = readFixture('eduvpn3-rules.v4');
    const merge = (nat: IptablesNat) => prepareMerge(eduvpn, 'rules.v4').render(nat);
    fc.assert(
      fc.property(profileSequenceArb(4), (maps) => {
        for (let i = 1; i < maps.length; i++) {
          const [before, map] = [maps[i - 1], maps[i]];
          if (!before || !map) throw new Error('no map');
          // As an apply reads it back: the file's chains, the bindings it was made from.
          const file = merge(renderIptablesChains(before, options));
          const { template, ours } = prepareMergeAndExtract(file, 'rules.v4');
          const layout = layoutOfRulesFile(ours, assignmentColumns(before));
          // Every profile removed: no rule, so no text to take (the next render starts over).
          expect(layout === undefined).toBe(before.clientCount === 0);
          const previous = { chains: ours.chains, jump: ours.jump ?? '', layout };
          const reused = renderIptablesChains(map, options, previous);
          expectSameAsScratch(reused, map);
          expect(template.render(reused)).toBe(merge(renderIptablesChains(map, options)));
        }
      }),
      { numRuns: 40 },
    );
  });

  test('kept as its layout alone and got back from the merged rules file (the daemon between applies), a render reuses it exactly, chained', () => {
    const eduvpn = readFixture('eduvpn3-rules.v4');
    const template = prepareMerge(eduvpn, 'rules.v4');
    expectChainedReuseExact((nat: IptablesNat): IptablesNat => {
      const fileText = template.render(nat);
      const at = rulesRunIn(nat, fileText);
      if (nat.rulesText === '') return nat;
      if (at === undefined || nat.layout === undefined) throw new Error('no run');
      // What is kept: no text, no chains; the text comes back as the file's bytes.
      const layout = { ...nat.layout, pieces: [] };
      const read = Buffer.from(fileText, 'utf8').toString('utf8');
      const back = chainsFromLayout(layout, nat.jump, read, at);
      if (!back) throw new Error('not got back');
      expect([...back.chains]).toEqual([...nat.chains]);
      expect(back.rulesText).toBe(nat.rulesText);
      expect(back.jump).toBe(nat.jump);
      return back;
    });
  });

  test('no chains got back from a text that does not hold them where the layout says', () => {
    const nat = renderIptablesChains(slash16Map(), options);
    const text = nat.rulesText ?? '';
    const layout = nat.layout;
    if (!layout) throw new Error('no layout');
    const file = `*nat\n${text}COMMIT\n`;
    expect(rulesRunIn(nat, file)).toBe(5);
    expect(chainsFromLayout(layout, nat.jump, file, 5)?.rulesText).toBe(text);
    // Shifted by one character, cut short, or a line break moved: refused.
    expect(chainsFromLayout(layout, nat.jump, `*nat\n#${text}COMMIT\n`, 5)).toBeUndefined();
    expect(chainsFromLayout(layout, nat.jump, `x*nat\n${text}COMMIT\n`, 5)).toBeUndefined();
    expect(chainsFromLayout(layout, nat.jump, `*nat\n${text.slice(0, -2)}`, 5)).toBeUndefined();
    const second = (layout.textStart[2] ?? 0) + 5;
    const moved = `${file.slice(0, second - 1)}x${file.slice(second)}`;
    expect(chainsFromLayout(layout, nat.jump, moved, 5)).toBeUndefined();
  });

  test('no run of our rules found in a text that does not hold the rules text as one run', () => {
    const nat = renderIptablesChains(slash16Map(), options);
    const text = nat.rulesText ?? '';
    const file = `*nat\n${text}COMMIT\n`;
    expect(rulesRunIn(nat, file)).toBe(5);
    // A text cut short does not hold it; nor do chains whose lines are not that text.
    expect(rulesRunIn(nat, `*nat\n${text.slice(0, -2)}\nCOMMIT\n`)).toBeUndefined();
    // One line a character shorter and the next one longer: the same length in all.
    const [name, rules = []] = [...nat.chains].find(([, lines]) => lines.length >= 2) ?? [];
    const [one = '', two = ''] = rules;
    const shortened = new Map(nat.chains).set(name ?? '', [
      one.slice(0, -1),
      `${two}x`,
      ...rules.slice(2),
    ]);
    expect(rulesRunIn({ ...nat, chains: shortened }, file)).toBeUndefined();
    // One character of one line changed: every line break where it was, the text not the same.
    const changed = new Map(nat.chains).set(name ?? '', [
      one,
      `${two.slice(0, -1)}${two.endsWith('5') ? '6' : '5'}`,
      ...rules.slice(2),
    ]);
    expect(rulesRunIn({ ...nat, chains: changed }, file)).toBeUndefined();
    // Every line the same, but one line break another character: not the rules text.
    const middle = text.indexOf('\n', text.length >> 1);
    const broken = `*nat\n${text.slice(0, middle)}\r${text.slice(middle + 1)}COMMIT\n`;
    expect(rulesRunIn(nat, broken)).toBeUndefined();
    // Not flattened first: the rules text given as many pieces is found all the same.
    const pieces = [...nat.chains.values()].map((lines) =>
      lines.map((line) => `${line}\n`).join(''),
    );
    expect(rulesRunIn(nat, `*nat\n${pieces.join('')}COMMIT\n`)).toBe(5);
  });

  test('from a rules file: a removed profile rewrites only the chains above it', () => {
    const eduvpn = readFixture('eduvpn3-rules.v4');
    const cells = new Map(Array.from({ length: 8 }, (_, cell) => [cell, 22]));
    const before = mapClients(poolsOf(cells), SETTINGS, undefined);
    const file = prepareMerge(eduvpn, 'rules.v4').render(renderIptablesChains(before, options));
    const { ours } = prepareMergeAndExtract(file, 'rules.v4');
    const layout = layoutOfRulesFile(ours, assignmentColumns(before));
    cells.delete(7);
    const after = mapClients(poolsOf(cells), SETTINGS, {
      blockSize: before.blockSize,
      bindings: assignmentColumns(before),
    });
    const reused = renderIptablesChains(after, options, { chains: ours.chains, jump: '', layout });
    expectSameAsScratch(reused, after);
    const fresh = [...reused.chains].filter(([name, rules]) => ours.chains.get(name) !== rules);
    // The root and the /20 that held it; everything below is taken from the file.
    expect(fresh.map(([name]) => name)).toEqual(['TNAT', 'TNAT-10.64.16.0/20']);
  });

  test('no layout from chains that are not one tree in our order, or rules that are not the text', () => {
    const map = slash16Map();
    const { chains, rulesText } = renderIptablesChains(map, options);
    const rows = assignmentColumns(map);
    expect(layoutOfRulesFile({ chains, rulesText }, rows)).toBeDefined();
    const names = [...chains.keys()];
    const reordered = new Map([...chains].reverse());
    const [first, second] = names;
    const swapped = new Map(chains);
    if (first === undefined || second === undefined) throw new Error('too few chains');
    swapped.delete(first);
    swapped.set(first, chains.get(first) ?? []);
    const foreign = new Map([...chains, ['TNAT-x', ['-A TNAT-x -j ACCEPT']]]);
    const cases = {
      reordered,
      rootNotFirst: swapped,
      foreign,
      noText: undefined,
    };
    for (const [name, odd] of Object.entries(cases))
      expect({
        name,
        layout: layoutOfRulesFile(
          { chains: odd ?? chains, rulesText: odd ? rulesText : undefined },
          rows,
        ),
      }).toEqual({ name, layout: undefined });
    expect(layoutOfRulesFile({ chains, rulesText: `${rulesText ?? ''}x\n` }, rows)).toBeUndefined();
  });

  test('the render format is a digest of how rules are written, the same on every call', () => {
    expect(renderFormat()).toMatch(/^[0-9a-f]{16}$/);
    expect(renderFormat()).toBe(renderFormat());
  });

  test('the render format samples every form a rule takes', () => {
    const rules = [...renderFormatSample().chains.values()].flat();
    expect(formsOf(rules)).toEqual({ unused: [], other: [] });
    // A real /16 takes no form the sample lacks, so a change to any form changes the digest.
    expect(
      formsOf([...renderIptablesChains(slash16Map(), options).chains.values()].flat()).other,
    ).toEqual([]);
  });
});

/**
 * The same for the nftables table: the element lines of clients bound as before are copied
 * from the earlier render's text (the daemon's last plan, whose text goes on past our table
 * with the IPv6 one), and the result must be the render from scratch, byte for byte.
 */
describe('an nftables render reusing the one before it equals a render from scratch', () => {
  const nftOptions = { outInterface: 'eth0', table: 'traceable_nat' };

  function expectNftSameAsScratch(reused: NftRender, map: PortMap): void {
    const scratch = renderNftTableReusing(map, nftOptions);
    expect(reused.text === scratch.text).toBe(true);
    expect([...reused.layout.clientsStart]).toEqual([...scratch.layout.clientsStart]);
    expect([...reused.layout.othersStart]).toEqual([...scratch.layout.othersStart]);
  }

  /** As the plan keeps it: the IPv6 table after ours, in the same text. */
  function withIpv6After(render: NftRender): NftRender {
    return { ...render, text: `${render.text}table ip6 traceable_nat6 {\n}\n` };
  }

  test('on random sequences of profile changes, mapped with stability', () => {
    fc.assert(
      fc.property(profileSequenceArb(8), ([first, ...rest]) => {
        if (!first) throw new Error('no map');
        let previous = renderNftTableReusing(first, nftOptions);
        for (const map of rest) {
          const reused = renderNftTableReusing(map, nftOptions, withIpv6After(previous));
          expectNftSameAsScratch(reused, map);
          previous = reused;
        }
      }),
      { numRuns: 60 },
    );
  });

  test('on random edits of odd maps (repeated clients, one-port blocks, blocks from one first port), options changed on the way', () => {
    const plain: fc.Arbitrary<PlainAssignment> = fc
      .record({
        client: fc.integer({ min: ip('10.42.0.0'), max: ip('10.42.1.255') }),
        publicAddress: fc.constantFrom(ip('192.0.2.1'), ip('198.51.100.7')),
        // Two blocks from the same first port: only the last tells them apart.
        block: fc.constantFrom([1024, 1087], [1024, 1024], [2048, 2048]),
      })
      .map(({ block: [firstPort, lastPort], ...rest }) => ({ ...rest, firstPort, lastPort }));
    fc.assert(
      fc.property(
        fc.array(plain, { maxLength: 200 }),
        fc.array(editArb(plain), { minLength: 1, maxLength: 12 }),
        (start, edits) => {
          renderChained(
            start,
            edits,
            renderNftTableReusing(arrayPortMap(start, 64), {
              outInterface: 'ens3',
              table: 'other',
            }),
            (map, previous) => renderNftTableReusing(map, nftOptions, previous),
            expectNftSameAsScratch,
          );
        },
      ),
      { numRuns: 100 },
    );
  });

  test('a one-client change of a /16 copies every other element line from the earlier text', () => {
    const before = slash16Map();
    const rendered = renderNftTableReusing(before, nftOptions);
    const list = listOf(before);
    const middle = list.length >> 1;
    const moved = list[middle];
    if (!moved) throw new Error('the /16 map is empty');
    list[middle] = { ...moved, firstPort: 1024, lastPort: 1024 };
    const after = arrayPortMap(list, before.blockSize);
    expectNftSameAsScratch(renderNftTableReusing(after, nftOptions, rendered), after);
    // Marked copies: the earlier text with one unchanged client's lines altered (same length)
    // comes through altered, and the moved client's line is written anew.
    const kept = middle + 7;
    const { clientsStart, othersStart } = rendered.layout;
    const mark = (text: string, from: number) =>
      text.slice(0, from) + '\t\t\t#' + text.slice(from + 4);
    const marked = mark(mark(rendered.text, clientsStart[kept] ?? 0), othersStart[kept] ?? 0);
    const reused = renderNftTableReusing(after, nftOptions, { ...rendered, text: marked });
    const lines = reused.text.split('\n');
    expect(lines.filter((line) => line.startsWith('\t\t\t#'))).toHaveLength(2);
    const scratch = renderNftTableReusing(after, nftOptions).text.split('\n');
    expect(lines.filter((line, i) => line !== scratch[i])).toHaveLength(2);
  });
});
