/**
 * Tracing over archived rulesets: the archive active at, just before and just after each
 * switch (original script -> ours -> nftables), every honest "cannot say", two nodes, and the
 * reverse lookup.
 */
import { formatAddress } from '../../src/net/address.js';
import { parseIpv4 } from '../../src/net/ipv4.js';
import { lookupClientAt } from '../../src/trace/lookup-at.js';
import { traceArchives, type TraceQuery, type TraceResult } from '../../src/trace/trace.js';
import { archiveFiles, memoryDir, type ArchiveSpec } from './archive-fixtures.js';

const A = '192.0.2.1';
const B = '192.0.2.9';
const T0 = 1600000000;
const T1 = 1600003600;
const T2 = 1600007200;

/** Original script (10.0.0.2, .3), then ours (.3 gone, .4 takes its block), then nft (.4 moves to B). */
const NODE: ArchiveSpec[] = [
  {
    at: T0,
    form: 'original',
    rows: [
      ['10.0.0.2', A, 65280, 65535],
      ['10.0.0.3', A, 65024, 65279],
    ],
  },
  {
    at: T1,
    form: 'iptables',
    took: 2,
    rows: [
      ['10.0.0.2', A, 65280, 65535],
      ['10.0.0.4', A, 65024, 65279],
    ],
  },
  {
    at: T2,
    form: 'nft',
    took: 1,
    publicAddresses: [A, B],
    rows: [
      ['10.0.0.2', A, 65280, 65535],
      ['10.0.0.4', B, 65024, 65279],
    ],
  },
];

const ip = (text: string): number => parseIpv4(text) ?? -1;

function trace(query: Omit<TraceQuery, 'address'> & { address?: string }): TraceResult {
  const dir = memoryDir('/node1', archiveFiles(NODE));
  return traceArchives([dir], {
    ...query,
    address: query.address === undefined ? undefined : ip(query.address),
  });
}

function summary(result: TraceResult) {
  return {
    status: result.status,
    clients: result.candidates.map((candidate) => formatAddress(candidate.client)),
    notes: result.notes.map((note) => note.code),
  };
}

describe('trace at, just before and just after each switch', () => {
  // Switch 1 (original -> ours): apply began T1-2, loaded during second T1; margin 5 s.
  // Switch 2 (ours -> nft): apply began T2-1, loaded during second T2.
  test.each([
    [
      'long before the first archive',
      T0 - 3600,
      65300,
      A,
      'not-found',
      [],
      ['before-first-archive'],
    ],
    [
      'as the first archive became active',
      T0 + 2,
      65300,
      A,
      'ambiguous',
      ['10.0.0.2'],
      ['may-predate-archives'],
    ],
    ['in the original script archive', T0 + 100, 65300, A, 'found', ['10.0.0.2'], []],
    ['another client of the original archive', T0 + 100, 65100, A, 'found', ['10.0.0.3'], []],
    ['just before switch 1 (start - margin - 1)', T1 - 8, 65100, A, 'found', ['10.0.0.3'], []],
    [
      'at the start of switch 1 window',
      T1 - 7,
      65100,
      A,
      'ambiguous',
      ['10.0.0.3', '10.0.0.4'],
      ['near-switch'],
    ],
    ['at switch 1', T1, 65100, A, 'ambiguous', ['10.0.0.3', '10.0.0.4'], ['near-switch']],
    [
      'at the end of switch 1 window',
      T1 + 5,
      65100,
      A,
      'ambiguous',
      ['10.0.0.3', '10.0.0.4'],
      ['near-switch'],
    ],
    ['just after switch 1', T1 + 6, 65100, A, 'found', ['10.0.0.4'], []],
    [
      'at switch 1, a block both rulesets agree on',
      T1,
      65300,
      A,
      'found',
      ['10.0.0.2'],
      ['near-switch'],
    ],
    ['just before switch 2', T2 - 7, 65100, A, 'found', ['10.0.0.4'], []],
    [
      'at switch 2 on A: the new ruleset gives the port to nobody',
      T2,
      65100,
      A,
      'ambiguous',
      ['10.0.0.4'],
      ['near-switch'],
    ],
    [
      'at switch 2 on B: B was not ours before',
      T2,
      65100,
      B,
      'ambiguous',
      ['10.0.0.4'],
      ['near-switch'],
    ],
    ['just after switch 2 on B (nftables archive)', T2 + 6, 65100, B, 'found', ['10.0.0.4'], []],
    ['long after the last archive', T2 + 86400 * 365, 65300, A, 'found', ['10.0.0.2'], []],
  ] as const)('%s', (_, at, port, address, status, clients, notes) => {
    expect(summary(trace({ at, port, address }))).toEqual({ status, clients, notes });
  });

  test('the archives named are the ones that may have been active', () => {
    const result = trace({ at: T1, port: 65100, address: A });
    expect(result.archives.map((archive) => archive.entry.name)).toEqual([
      `rules.v4.${T0}`,
      `rules.v4.${T1}`,
    ]);
    expect(result.archives.map((archive) => archive.ours)).toEqual([false, true]);
    expect(result.archives[1]?.applyStartedAt).toBe(T1 - 2);
    const [old, next] = result.candidates;
    expect(old?.matches.map((match) => match.archive.entry.name)).toEqual([`rules.v4.${T0}`]);
    expect(next?.matches[0]?.assignment).toMatchObject({ firstPort: 65024, lastPort: 65279 });
  });
});

describe('honesty', () => {
  test.each([
    [
      'a port in no block',
      { at: T1 + 100, port: 1000, address: A },
      'not-found',
      ['port-in-no-block'],
    ],
    [
      'an address that was not ours then (B came later)',
      { at: T1 + 100, port: 65100, address: B },
      'not-found',
      ['address-not-ours'],
    ],
    [
      'an address that was never ours',
      { at: T2 + 100, port: 65100, address: '198.51.100.7' },
      'not-found',
      ['address-not-ours'],
    ],
    [
      'a configured address with no client on that port',
      { at: T2 + 100, port: 65100, address: A },
      'not-found',
      ['port-in-no-block'],
    ],
    [
      'no address while several were in use',
      { at: T2 + 100, port: 65100 },
      'ambiguous',
      ['address-needed'],
    ],
  ] as const)('%s', (_, query, status, notes) => {
    const result = trace(query);
    expect(result.status).toBe(status);
    expect(result.notes.map((note) => note.code)).toEqual(notes);
    expect(result.notes.every((note) => note.message.length > 20)).toBe(true);
  });

  test('the address-not-ours note names the addresses of that moment, not of today', () => {
    const result = trace({ at: T1 + 100, port: 65100, address: B });
    expect(result.notes[0]?.message).toMatch(/the rulesets active then used 192\.0\.2\.1$/);
  });

  test('a protocol narrows to matching rules; both-protocol rules match either', () => {
    expect(trace({ at: T0 + 100, port: 65300, address: A, proto: 'udp' }).status).toBe('found');
    expect(trace({ at: T0 + 100, port: 65300, address: A, proto: 'tcp' }).status).toBe('found');
    // A hand-edited original archive whose tcp and udp blocks differ.
    const text = [
      '*nat',
      `-A POSTROUTING -s 10.0.0.5 -p tcp -j SNAT --to-source ${A}:60000-60255`,
      `-A POSTROUTING -s 10.0.0.5 -p udp -j SNAT --to-source ${A}:61000-61255`,
      'COMMIT',
      '',
    ].join('\n');
    const dir = memoryDir('/edited', new Map([[`rules.v4.${T0}`, text]]));
    const at = T0 + 100;
    const statuses = (['tcp', 'udp', undefined] as const).map(
      (proto) => traceArchives([dir], { at, port: 60100, address: ip(A), proto }).status,
    );
    expect(statuses).toEqual(['found', 'not-found', 'found']);
  });

  test('no archives at all', () => {
    const result = traceArchives([memoryDir('/empty', new Map())], { at: T0, port: 65300 });
    expect(summary(result)).toEqual({ status: 'not-found', clients: [], notes: ['no-archives'] });
  });

  test('only the archives around the time are read', () => {
    const many: ArchiveSpec[] = Array.from({ length: 60 }, (_, i) => ({
      at: T0 + i * 3600,
      form: 'iptables',
      rows: [['10.0.0.2', A, 65280 - 256 * (i % 3), 65535 - 256 * (i % 3)]],
    }));
    const dir = memoryDir('/many', archiveFiles(many));
    const result = traceArchives([dir], { at: T0 + 30 * 3600 + 600, port: 65300, address: ip(A) });
    expect(result.status).toBe('found');
    expect(dir.reads).toEqual([`rules.v4.${T0 + 30 * 3600}`, `rules.v4.${T0 + 31 * 3600}`]);
  });
});

describe('two nodes, one archive directory each', () => {
  const N1: ArchiveSpec[] = [{ at: T0, form: 'iptables', rows: [['10.0.0.2', A, 65280, 65535]] }];
  const N2: ArchiveSpec[] = [
    { at: T1, form: 'nft', rows: [['10.1.0.2', '198.51.100.1', 65280, 65535]] },
  ];
  const dirs = () => [memoryDir('/node1', archiveFiles(N1)), memoryDir('/node2', archiveFiles(N2))];

  test.each([
    ['the address picks node 2', T1 + 100, '198.51.100.1', 'found', ['10.1.0.2'], []],
    ['the address picks node 1', T1 + 100, A, 'found', ['10.0.0.2'], []],
    [
      'without an address both nodes answer',
      T1 + 100,
      undefined,
      'ambiguous',
      ['10.0.0.2', '10.1.0.2'],
      ['address-needed', 'several-nodes'],
    ],
    [
      'node 2 had no archive yet: node 1 still answers for its address',
      T0 + 100,
      A,
      'found',
      ['10.0.0.2'],
      ['before-first-archive'],
    ],
    [
      'node 2 had no archive yet and the address is node 2s',
      T0 + 100,
      '198.51.100.1',
      'not-found',
      [],
      ['before-first-archive', 'address-not-ours'],
    ],
  ] as const)('%s', (_, at, address, status, clients, notes) => {
    const result = traceArchives(dirs(), {
      at,
      port: 65300,
      address: address === undefined ? undefined : ip(address),
    });
    expect(summary(result)).toEqual({ status, clients, notes });
  });
});

describe('lookup --at: the reverse', () => {
  const dir = () => memoryDir('/node1', archiveFiles(NODE));
  test.each([
    [
      'a client of the original archive',
      '10.0.0.3',
      T0 + 100,
      'found',
      ['192.0.2.1:65024-65279'],
      [],
    ],
    [
      'a removed client at the switch',
      '10.0.0.3',
      T1,
      'ambiguous',
      ['192.0.2.1:65024-65279'],
      ['near-switch'],
    ],
    [
      'a kept client at the switch',
      '10.0.0.2',
      T1,
      'found',
      ['192.0.2.1:65280-65535', '192.0.2.1:65280-65535'],
      ['near-switch'],
    ],
    [
      'a moved client after the switch',
      '10.0.0.4',
      T2 + 100,
      'found',
      ['192.0.2.9:65024-65279'],
      [],
    ],
    [
      'a moved client at the switch',
      '10.0.0.4',
      T2,
      'ambiguous',
      ['192.0.2.1:65024-65279', '192.0.2.9:65024-65279'],
      ['near-switch'],
    ],
    ['not a client then', '10.0.0.99', T2 + 100, 'not-found', [], ['not-a-client']],
    ['before the first archive', '10.0.0.2', T0 - 100, 'not-found', [], ['before-first-archive']],
  ] as const)('%s', (_, client, at, status, blocks, notes) => {
    const result = lookupClientAt([dir()], ip(client), at);
    expect({
      status: result.status,
      blocks: result.matches.map(
        ({ assignment }) =>
          `${formatAddress(assignment.publicAddress)}:${assignment.firstPort}-${assignment.lastPort}`,
      ),
      notes: result.notes.map((note) => note.code),
    }).toEqual({ status, blocks, notes });
  });
});
