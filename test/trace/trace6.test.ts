/**
 * Tracing IPv6 (issue 14, trace side) over archive directories written by the real store: port
 * blocks and prefix mode, both backends, switches, the time before the first archive, an
 * activation without IPv6 of ours, and IPv6 halves deleted, edited, replaced or pending. The
 * expected client of every case comes from the Map6 the archive was rendered from.
 */
import { chmodSync, mkdtempSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { archiveDirOf } from '../../src/cli/trace-sources.js';
import { parseConfig } from '../../src/config.js';
import { mapClients6, type Map6, type PortMap6 } from '../../src/mapping/map6.js';
import { formatAddress } from '../../src/net/address.js';
import { parseIpv4 } from '../../src/net/ipv4.js';
import { lookupClientAt } from '../../src/trace/lookup-at.js';
import { traceArchives, type TraceResult } from '../../src/trace/trace.js';
import { ip6, pool6 } from '../mapping/fixtures6.js';
import { readArchiveText } from '../helpers/archive-files.js';
import { prefixMap6, treeMap6 } from '../render/maps6.js';
import { rulesV6, writeActivations, type Activation } from './archive6-fixtures.js';
import type { Row } from './archive-fixtures.js';

const CONFIG = parseConfig(
  'nat:\n  publicAddresses: [192.0.2.1]\n  outInterface: eth0\nfirewall:\n  archiveDir: /nonexistent/archive\n',
  'test.yaml',
);
const ROWS: Row[] = [['10.87.12.2', '192.0.2.1', 65472, 65535]];
const T1 = 1_780_000_000;
const T2 = T1 + 3600;
const T3 = T2 + 3600;
const PUBLIC = ip6('2001:db8::1');

/** The same clients as treeMap6 in the other order and with nothing to keep: other blocks. */
function reorderedMap6(): PortMap6 {
  return mapClients6(
    [
      pool6('office', '10.87.13.0/29', 'fd87:13::/112', 'openvpn'),
      pool6('internet', '10.87.12.0/26', 'fd87:12::/64'),
    ],
    {
      publicAddresses: [PUBLIC, ip6('2001:db8::2')],
      portRange: { first: 1024, last: 65535 },
      excludePorts: [],
      portsPerClient: 1024,
      minPortsPerClient: 64,
    },
  );
}

const mapA = treeMap6();
const mapB = reorderedMap6();

/** A port on PUBLIC whose holder differs between the maps (the expected answers' source). */
function switchingPort(): { port: number; before: bigint; after: bigint } {
  for (let port = 65535; port >= 1024; port -= 1024) {
    const before = mapA.reverse(PUBLIC, port)?.client;
    const after = mapB.reverse(PUBLIC, port)?.client;
    if (before !== undefined && after !== undefined && before !== after) {
      return { port, before, after };
    }
  }
  throw new Error('the maps never differ');
}
const { port: PORT, before: HOLDER_A, after: HOLDER_B } = switchingPort();

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tnat-trace6-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function write(activations: readonly Activation[], compress = true): string[] {
  return writeActivations(dir, activations, compress);
}

function trace(at: number, address: bigint, port?: number): TraceResult {
  return traceArchives([archiveDirOf(dir, CONFIG)], { at, address, port });
}

function summary(result: TraceResult) {
  return {
    status: result.status,
    clients: result.candidates.map((candidate) => formatAddress(candidate.client)),
    notes: result.notes.map((note) => note.code),
  };
}

/** Three activations: IPv6 by map A, by map B, then none of ours (nat6 removed). */
const HISTORY: Activation[] = [
  { at: T1, backend: 'iptables', rows: ROWS, map6: mapA },
  { at: T2, backend: 'iptables', rows: ROWS, map6: mapB, took: 2 },
  { at: T3, backend: 'iptables', rows: ROWS },
];

describe('port blocks (iptables: rules.v6.<s> beside rules.v4.<s>)', () => {
  test.each([
    ['long before the first archive', T1 - 3600, [], 'not-found', ['before-first-archive']],
    ['in the first ruleset', T1 + 1800, ['A'], 'found', []],
    ['in the second ruleset', T2 + 1800, ['B'], 'found', []],
    ['at the switch', T2, ['A', 'B'], 'ambiguous', ['near-switch']],
    ['5 s after the switch', T2 + 5, ['A', 'B'], 'ambiguous', ['near-switch']],
    ['7 s after the switch', T2 + 7, ['B'], 'found', []],
    ['when IPv6 was no longer ours', T3 + 1800, [], 'not-found', ['address-not-ours']],
  ] as const)('%s', (_label, at, holders, status, notes) => {
    write(HISTORY);
    const holder = { A: HOLDER_A, B: HOLDER_B };
    expect(summary(trace(at, PUBLIC, PORT))).toEqual({
      status,
      clients: holders.map((which) => formatAddress(holder[which])),
      notes,
    });
  });

  test('the block named is the one the map gave, read from the archive', () => {
    write(HISTORY, false);
    const [candidate] = trace(T1 + 1800, PUBLIC, PORT).candidates;
    const block = mapA.forward(HOLDER_A)?.block;
    expect(candidate?.matches.map((match) => match.assignment)).toEqual([
      {
        client: HOLDER_A,
        publicAddress: PUBLIC,
        firstPort: block?.first,
        lastPort: block?.last,
        proto: 'both',
      },
    ]);
  });

  test('an activation without IPv6 of ours says so', () => {
    write(HISTORY);
    const note = trace(T3 + 1800, PUBLIC, PORT).notes[0];
    expect(note?.message).toMatch(
      new RegExp(`rules\\.v4\\.${T3}\\.gz held no IPv6 rules of ours: eduVPN's own masquerade`),
    );
  });

  test('a port in no block, and an IPv6 port-block address without a port', () => {
    write(HISTORY);
    const free = [...mapA.blocks].reverse().find((block) => !mapA.reverse(PUBLIC, block.first));
    if (free)
      expect(summary(trace(T1 + 1800, PUBLIC, free.first)).notes).toEqual(['port-in-no-block']);
    expect(summary(trace(T1 + 1800, PUBLIC))).toEqual({
      status: 'not-found',
      clients: [],
      notes: ['port-needed'],
    });
  });

  test('an IPv4 trace is the same whatever became of the IPv6 half', () => {
    write(HISTORY);
    for (const name of readdirSync(dir).filter((file) => file.startsWith('rules.v6.'))) {
      unlinkSync(join(dir, name));
    }
    const result = traceArchives([archiveDirOf(dir, CONFIG)], {
      at: T1 + 1800,
      port: 65500,
      address: parseIpv4('192.0.2.1'),
    });
    expect(summary(result)).toEqual({ status: 'found', clients: ['10.87.12.2'], notes: [] });
  });
});

describe('an IPv6 half that is not what was archived is no confident answer', () => {
  const half = `rules.v6.${T1}.gz`;

  test('deleted: no client can be named, and the note says which half is missing', () => {
    write(HISTORY);
    unlinkSync(join(dir, half));
    const result = trace(T1 + 1800, PUBLIC, PORT);
    expect(summary(result)).toEqual({
      status: 'ambiguous',
      clients: [],
      notes: ['archive-damaged'],
    });
    expect(result.notes[0]?.message).toMatch(
      /the IPv6 half of rules\.v4\.1780000000\.gz .* is missing/,
    );
  });

  test('edited to name another client: the edit is given, but not as found', () => {
    write(HISTORY);
    const other = ip6('fd87:12::3f');
    const text = readArchiveText(join(dir, half)).replaceAll(
      `-s ${formatAddress(HOLDER_A)}/128`,
      `-s ${formatAddress(other)}/128`,
    );
    chmodSync(join(dir, half), 0o640);
    writeFileSync(join(dir, half), gzipSync(text));
    expect(summary(trace(T1 + 1800, PUBLIC, PORT))).toEqual({
      status: 'ambiguous',
      clients: [formatAddress(other)],
      notes: ['archive-damaged'],
    });
  });

  test('replaced by another intact half (a wrong SHA-256): not trusted either', () => {
    write(HISTORY);
    chmodSync(join(dir, half), 0o640);
    writeFileSync(join(dir, half), gzipSync(rulesV6(mapB)));
    const result = trace(T1 + 1800, PUBLIC, PORT);
    expect(summary(result)).toEqual({
      status: 'ambiguous',
      clients: [formatAddress(HOLDER_B)],
      notes: ['archive-damaged'],
    });
    expect(result.notes[0]?.message).toMatch(/rules\.v4\.1780000000\.gz recorded its SHA-256/);
  });

  test('cut before its end (plain file)', () => {
    write(HISTORY, false);
    const plain = `rules.v6.${T1}`;
    const text = readArchiveText(join(dir, plain));
    chmodSync(join(dir, plain), 0o640);
    writeFileSync(join(dir, plain), text.slice(0, text.lastIndexOf('COMMIT')));
    expect(summary(trace(T1 + 1800, PUBLIC, PORT)).notes).toEqual(['archive-damaged']);
  });
});

test('an interrupted apply with an IPv6 half: both answers from its start on', () => {
  write([
    { at: T1, backend: 'iptables', rows: ROWS, map6: mapA },
    { at: T2, backend: 'iptables', rows: ROWS, map6: mapB, took: 3, interrupted: true },
  ]);
  expect(readdirSync(dir)).toEqual(
    expect.arrayContaining(['rules.v4.pending', 'rules.v6.pending']),
  );
  const after = trace(T2, PUBLIC, PORT);
  expect(summary(after)).toEqual({
    status: 'ambiguous',
    clients: [HOLDER_A, HOLDER_B].map(formatAddress),
    notes: ['apply-interrupted'],
  });
  expect(summary(trace(T2 - 60, PUBLIC, PORT))).toEqual({
    status: 'found',
    clients: [formatAddress(HOLDER_A)],
    notes: [],
  });
});

describe('nftables: our table ip6 in the same archive', () => {
  test('port blocks, a switch, and an activation without table ip6', () => {
    write(HISTORY.map((activation) => ({ ...activation, backend: 'nftables' as const })));
    expect(summary(trace(T1 + 1800, PUBLIC, PORT)).clients).toEqual([formatAddress(HOLDER_A)]);
    expect(summary(trace(T2 + 1, PUBLIC, PORT)).clients).toEqual(
      [HOLDER_A, HOLDER_B].map(formatAddress),
    );
    expect(summary(trace(T3 + 1800, PUBLIC, PORT))).toEqual({
      status: 'not-found',
      clients: [],
      notes: ['address-not-ours'],
    });
  });
});

describe('prefix mode (NETMAP, snat ip6 prefix to)', () => {
  const map: Map6 = prefixMap6();
  const clients = [...map.assignments()];
  const client = clients[7];

  test.each(['iptables', 'nftables'] as const)(
    '%s: the address alone names the client',
    (backend) => {
      write([{ at: T1, backend, rows: ROWS, map6: map }]);
      if (!client) throw new Error('no client');
      expect(summary(trace(T1 + 60, client.publicAddress))).toEqual({
        status: 'found',
        clients: [formatAddress(client.client)],
        notes: [],
      });
      // The port does not matter.
      expect(summary(trace(T1 + 60, client.publicAddress, 443)).clients).toEqual([
        formatAddress(client.client),
      ]);
      // Every client of every range comes back as itself.
      for (const each of clients) {
        expect(trace(T1 + 60, each.publicAddress).candidates.map((c) => c.client)).toEqual([
          each.client,
        ]);
      }
    },
  );

  test('an address in the prefix whose kept bits fit no client range', () => {
    write([{ at: T1, backend: 'iptables', rows: ROWS, map6: map }]);
    expect(summary(trace(T1 + 60, ip6('2001:db8:100:ff::1')))).toEqual({
      status: 'not-found',
      clients: [],
      notes: ['port-in-no-block'],
    });
  });

  test("a range's network, the VPN server's own address and those past its clients are no client's", () => {
    write([{ at: T1, backend: 'iptables', rows: ROWS, map6: map }]);
    const prefixMap = prefixMap6();
    const [range] = prefixMap.clientRanges;
    if (!range) throw new Error('no client range');
    // What NETMAP makes of any address of the range: the prefix, and the host bits below it.
    const publicOf = (offset: bigint) => {
      const { network, prefix } = prefixMap.publicPrefix;
      return network | ((range.range.network + offset) & ((1n << BigInt(128 - prefix)) - 1n));
    };
    for (const offset of [0n, 1n, range.last + 1n]) {
      expect(summary(trace(T1 + 60, publicOf(offset)))).toEqual({
        status: 'not-found',
        clients: [],
        notes: ['port-in-no-block'],
      });
    }
    // The first and last client of the range are.
    for (const offset of [range.first, range.last]) {
      expect(summary(trace(T1 + 60, publicOf(offset))).clients).toEqual([
        formatAddress(range.range.network + offset),
      ]);
    }
  });

  test('lookup --at: the client to its public address', () => {
    write([{ at: T1, backend: 'nftables', rows: ROWS, map6: map }]);
    if (!client) throw new Error('no client');
    const result = lookupClientAt([archiveDirOf(dir, CONFIG)], client.client, T1 + 60);
    expect(result.status).toBe('found');
    expect(result.matches.map((match) => match.assignment.publicAddress)).toEqual([
      client.publicAddress,
    ]);
  });
});

describe('lookup --at for an IPv6 client', () => {
  test('its block in each ruleset, with the same honesty about switches', () => {
    write(HISTORY);
    const blockOf = (map: PortMap6) => map.forward(HOLDER_A)?.block;
    const at = (seconds: number) => lookupClientAt([archiveDirOf(dir, CONFIG)], HOLDER_A, seconds);
    const found = at(T1 + 1800);
    expect(found.status).toBe('found');
    expect(found.matches.map((match) => match.assignment.firstPort)).toEqual([
      blockOf(mapA)?.first,
    ]);
    expect(at(T2).status).toBe('ambiguous');
    const gone = at(T3 + 1800);
    expect(gone.status).toBe('not-found');
    expect(gone.notes[0]?.message).toMatch(/held no IPv6 rules of ours/);
  });
});
