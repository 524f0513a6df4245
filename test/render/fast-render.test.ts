import fc from 'fast-check';
import type { ClientPool } from '../../src/eduvpn/pool.js';
import { mapClients } from '../../src/mapping/map.js';
import type { PortMap } from '../../src/mapping/types.js';
import { formatCidr4 } from '../../src/net/ipv4.js';
import {
  renderIptablesChains,
  renderLinearChain,
  renderNatTable,
  type IptablesNat,
} from '../../src/render/iptables.js';
import { LineWriter, encodeText } from '../../src/render/line-writer.js';
import { renderNftTable } from '../../src/render/nftables.js';
import { prepareMerge } from '../../src/render/rules-file.js';
import { arrayPortMap } from '../helpers/port-map.js';
import { ip, poolOf } from '../mapping/fixtures.js';
import { readFixture } from './golden.js';
import { slash16Map } from './maps.js';
import {
  referenceIptablesChains,
  referenceLinearChain,
  referenceNftTable,
} from './reference-render.js';

const NUM_RUNS = 100;

/** Pools in distinct /20 cells of 10/8, so they never overlap; up to 4 094 clients each. */
const poolsArb: fc.Arbitrary<ClientPool[]> = fc
  .uniqueArray(
    fc.record({
      cell: fc.integer({ min: 0, max: 4095 }),
      prefix: fc.integer({ min: 20, max: 31 }),
    }),
    { selector: (pool) => pool.cell, maxLength: 4 },
  )
  .map((cells) =>
    cells.map(({ cell, prefix }, index) =>
      poolOf(`p${index}`, formatCidr4({ network: ip('10.0.0.0') + cell * 4096, prefix })),
    ),
  );

/** A map from eduVPN-like pools, as an apply makes it (at most 16 376 clients fit 5 addresses). */
const poolMapArb: fc.Arbitrary<PortMap> = fc
  .record({ pools: poolsArb, addresses: fc.integer({ min: 5, max: 300 }) })
  .map(({ pools, addresses }) =>
    mapClients(pools, {
      publicAddresses: Array.from({ length: addresses }, (_, i) => ip('198.18.0.1') + i),
      portRange: { first: 1024, last: 65535 },
      excludePorts: [],
      portsPerClient: 'auto',
      minPortsPerClient: 16,
    }),
  );

/**
 * Any assignments, in any order: clients anywhere in the address space (0.0.0.0 and
 * 255.255.255.255 too), repeated clients, one-port blocks, clients of one leaf on several
 * public addresses.
 */
const oddMapArb: fc.Arbitrary<PortMap> = fc
  .array(
    fc.record({
      client: fc.oneof(
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.integer({ min: ip('10.42.0.0'), max: ip('10.42.1.255') }),
        fc.constantFrom(0, 0xffffffff, ip('10.42.0.2')),
      ),
      publicAddress: fc.constantFrom(ip('192.0.2.1'), ip('198.51.100.7'), 0, 0xffffffff),
      first: fc.integer({ min: 0, max: 65535 }),
      length: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 4096 })),
    }),
    { maxLength: 120 },
  )
  .map((list) =>
    arrayPortMap(
      list.map(({ client, publicAddress, first, length }) => ({
        client,
        publicAddress,
        firstPort: first,
        lastPort: Math.min(65535, first + length),
      })),
      64,
    ),
  );

const optionsArb = fc.record({
  outInterface: fc.stringMatching(/^[A-Za-z0-9_.:@+-]{1,15}$/),
});

function expectSameChains(fast: IptablesNat, reference: IptablesNat): void {
  expect([...fast.chains]).toEqual([...reference.chains]);
  expect(fast.jump).toBe(reference.jump);
  const lines = [...reference.chains.values()].flat();
  expect(fast.rulesText).toBe(lines.map((line) => `${line}\n`).join(''));
  expect(renderNatTable(fast)).toBe(renderNatTable(reference));
}

/** eduVPN's own rules.v4, as it is and with CRLF line endings. */
const RULES_FILES = [readFixture('eduvpn3-rules.v4')];
RULES_FILES.push(RULES_FILES[0]?.replaceAll('\n', '\r\n') ?? '');

describe('the byte-writing renderers equal the plain reference rendering', () => {
  test('iptables tree and linear chain, on maps from random pools and on odd maps', () => {
    fc.assert(
      fc.property(fc.oneof(poolMapArb, oddMapArb), optionsArb, (map, options) => {
        expectSameChains(renderIptablesChains(map, options), referenceIptablesChains(map, options));
        expectSameChains(renderLinearChain(map, options), referenceLinearChain(map, options));
      }),
      { numRuns: NUM_RUNS },
    );
  });

  test('the merge into a rules file, with LF and with CRLF line endings', () => {
    fc.assert(
      fc.property(poolMapArb, optionsArb, fc.constantFrom(...RULES_FILES), (map, options, file) => {
        const template = prepareMerge(file, 'rules.v4');
        expect(template.render(renderIptablesChains(map, options))).toBe(
          template.render(referenceIptablesChains(map, options)),
        );
      }),
      { numRuns: NUM_RUNS / 4 },
    );
  });

  test('nftables table', () => {
    fc.assert(
      fc.property(
        fc.oneof(poolMapArb, oddMapArb),
        optionsArb,
        fc.constantFrom(undefined, 'tnat_x'),
        (map, { outInterface }, table) => {
          const options = table === undefined ? { outInterface } : { outInterface, table };
          expect(renderNftTable(map, options)).toBe(referenceNftTable(map, options));
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });

  test('a /16, whose text spans several chunks of the writer', () => {
    const map = slash16Map();
    const options = { outInterface: 'eth0' };
    const fast = renderIptablesChains(map, options);
    expect(fast.rulesText?.length).toBeGreaterThan(3 * (4 << 20));
    expectSameChains(fast, referenceIptablesChains(map, options));
    expect(renderNftTable(map, options)).toBe(referenceNftTable(map, options));
  });
});

describe('LineWriter', () => {
  test('hands each owner its lines and the whole text, whatever the chunk size', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            owner: fc.integer({ min: 0, max: 3 }),
            text: fc.string({
              unit: fc.integer({ min: 32, max: 255 }).map((code) => String.fromCharCode(code)),
              maxLength: 30,
            }),
            number: fc.nat(),
            address: fc.integer({ min: 0, max: 0xffffffff }),
            twice: fc.boolean(),
          }),
          { maxLength: 60 },
        ),
        fc.integer({ min: 1, max: 200 }),
        (lines, chunkBytes) => {
          const writer = new LineWriter(chunkBytes, 100);
          const owners: string[][] = [[], [], [], []];
          const expected: string[][] = [[], [], [], []];
          let whole = '';
          for (const { owner, text, number, address, twice } of lines) {
            writer.bytes(encodeText(text));
            writer.decimal(number);
            const at = writer.column;
            writer.ipv4(address);
            const line = `${text}${number}${address >>> 24}.${(address >>> 16) & 255}.${(address >>> 8) & 255}.${address & 255}`;
            const written = [line];
            const target = owner === 3 ? undefined : owners[owner];
            if (twice) {
              // The address's first digit becomes Z in the repetition.
              writer.endLineTwice(target, at, encodeText('Z'));
              written.push(`${line.slice(0, at)}Z${line.slice(at + 1)}`);
            } else {
              writer.endLine(target);
            }
            if (owner !== 3) expected[owner]?.push(...written);
            whole += written.map((one) => `${one}\n`).join('');
          }
          expect(writer.finish()).toBe(whole);
          expect(owners.slice(0, 3)).toEqual(expected.slice(0, 3));
          expect(owners[3]).toEqual([]);
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });

  test('refuses a character that is not one byte, and a line longer than it allows', () => {
    expect(() => encodeText('eth\u{1F600}')).toThrow(RangeError);
    const writer = new LineWriter(10, 8);
    writer.bytes(encodeText('x'.repeat(26)));
    expect(() => {
      writer.byte(120);
    }).toThrow(RangeError);
    expect(() => {
      writer.endLineTwice(undefined, 26, encodeText('y'));
    }).toThrow(RangeError);
  });
});
