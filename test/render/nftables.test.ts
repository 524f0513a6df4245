import {
  nftChainText,
  renderNftCanary,
  renderNftDelta,
  renderNftTable,
} from '../../src/render/nftables.js';
import { formatIpv4 } from '../../src/net/ipv4.js';
import { readAssignments } from '../../src/render/read-rules.js';
import { arrayPortMap, ip } from '../helpers/port-map.js';
import { expectGolden } from './golden.js';
import { tinyMap, treeMap } from './maps.js';

const options = { outInterface: 'eth0' };

function moveClient(client: string, to: { publicAddress: string; first: number; last: number }) {
  const map = treeMap();
  const list = [...map.assignments()].map((entry) =>
    entry.client === ip(client)
      ? { ...entry, publicAddress: ip(to.publicAddress), firstPort: to.first, lastPort: to.last }
      : entry,
  );
  return arrayPortMap(list, map.blockSize);
}

describe('renderNftTable', () => {
  test.each([
    ['tiny.nft', tinyMap],
    ['tree.nft', treeMap],
  ])('matches the golden file %s', (name, build) => {
    expectGolden(name, renderNftTable(build(), options));
  });

  test('leaves out elements for an empty map and uses the given table and interface', () => {
    const text = renderNftTable(arrayPortMap([], 256), { outInterface: 'ens3', table: 'tn_test' });
    expect(text).not.toContain('elements');
    expect(text).toContain(
      '\tmap clients {\n\t\ttype ipv4_addr : interval ipv4_addr . inet_service\n\t}\n',
    );
    expect(text.split('\n').slice(1, 4)).toEqual([
      'table ip tn_test',
      'delete table ip tn_test',
      'table ip tn_test {',
    ]);
    expect(text).toContain(
      'oifname "ens3" meta l4proto { tcp, udp } snat ip to ip saddr map @clients',
    );
  });

  test('writes a one-port block as a range, the only form nft accepts', () => {
    const map = arrayPortMap(
      [
        {
          client: ip('10.42.0.2'),
          publicAddress: ip('192.0.2.1'),
          firstPort: 4096,
          lastPort: 4096,
        },
      ],
      1,
    );
    expect(renderNftTable(map, options)).toContain('\t\t\t10.42.0.2 : 192.0.2.1 . 4096-4096,\n');
  });

  test('never declares the port map with flags interval', () => {
    expect(renderNftTable(treeMap(), options)).not.toMatch(/flags/);
  });

  test('lists elements in ascending client order, one per line', () => {
    const reversed = arrayPortMap([...treeMap().assignments()].reverse(), 2048);
    const text = renderNftTable(reversed, options);
    expect(text).toBe(renderNftTable(treeMap(), options));
    const clients = readAssignments(text).assignments.map((entry) => entry.client);
    expect(clients).toEqual([...clients].sort((a, b) => a - b));
    expect(text.match(/^\t\t\t10\.4[23]\.\d+\.\d+ : /gm)).toHaveLength(2 * 42);
  });
});

describe('renderNftDelta', () => {
  test('matches the golden file for one client moved to another address and block', () => {
    const after = moveClient('10.42.0.20', {
      publicAddress: '198.51.100.7',
      first: 1024,
      last: 3071,
    });
    expectGolden('tree-delta.nft', renderNftDelta(treeMap(), after, options));
  });

  test('changes only the port map when only the block changed', () => {
    const after = moveClient('10.42.0.20', { publicAddress: '192.0.2.1', first: 1024, last: 3071 });
    expect(renderNftDelta(treeMap(), after, options)).toBe(
      [
        '# traceable-nat: changed clients of table ip traceable_nat',
        'delete element ip traceable_nat clients {',
        '\t10.42.0.20,',
        '}',
        'add element ip traceable_nat clients {',
        '\t10.42.0.20 : 192.0.2.1 . 1024-3071,',
        '}',
        '',
      ].join('\n'),
    );
  });

  test('deletes vanished clients and adds new ones', () => {
    const before = arrayPortMap(
      [
        {
          client: ip('10.42.0.2'),
          publicAddress: ip('192.0.2.1'),
          firstPort: 65280,
          lastPort: 65535,
        },
      ],
      256,
    );
    const after = [
      {
        client: ip('10.42.0.3'),
        publicAddress: ip('192.0.2.1'),
        firstPort: 65280,
        lastPort: 65535,
      },
    ];
    const delta = renderNftDelta(before, after, { ...options, table: 'tn' });
    expect(delta).toContain('delete element ip tn clients {\n\t10.42.0.2,\n}\n');
    expect(delta).toContain('delete element ip tn others {\n\t10.42.0.2,\n}\n');
    expect(delta).toContain(
      'add element ip tn clients {\n\t10.42.0.3 : 192.0.2.1 . 65280-65535,\n}\n',
    );
    expect(delta).toContain('add element ip tn others {\n\t10.42.0.3 : 192.0.2.1,\n}\n');
    expect(delta.indexOf('add element')).toBeGreaterThan(delta.lastIndexOf('delete element'));
  });

  test('is empty when nothing changed, also against what was read back', () => {
    expect(renderNftDelta(treeMap(), treeMap(), options)).toBe('');
    const readBack = readAssignments(renderNftTable(treeMap(), options)).assignments;
    expect(renderNftDelta(readBack, treeMap(), options)).toBe('');
  });
});

describe('the nftables canary', () => {
  const a = 'a'.repeat(64);
  const b = 'b'.repeat(64);

  test('replaces the canaries the table holds by the one named', () => {
    expect(renderNftCanary('tn', [], a)).toBe(`add chain ip tn applied_${a}\n`);
    expect(renderNftCanary('tn', [b], a)).toBe(
      `delete chain ip tn applied_${b}\nadd chain ip tn applied_${a}\n`,
    );
    expect(renderNftCanary('tn', [a, b], a)).toBe(`delete chain ip tn applied_${b}\n`);
    expect(renderNftCanary('tn', [a], a)).toBe('');
  });

  test("the chain's text is the same for other elements, different for another interface", () => {
    const table = renderNftTable(treeMap(), options);
    const chain = nftChainText(table, 'traceable_nat');
    expect(chain).toContain('snat ip to ip saddr map @clients');
    expect(chain).toContain('snat ip to ip saddr map @others');
    expect(chain).not.toContain('elements');
    expect(nftChainText(renderNftTable(tinyMap(), options), 'traceable_nat')).toBe(chain);
    expect(
      nftChainText(renderNftTable(treeMap(), { outInterface: 'eth1' }), 'traceable_nat'),
    ).not.toBe(chain);
    expect(nftChainText(table, 'other')).toBeUndefined();
  });
});

describe('renderNftDelta on random changes', () => {
  /** A small deterministic generator (mulberry32), so a failure can be replayed by its seed. */
  function random(seed: number) {
    let state = seed;
    return (below: number) => {
      state = (state + 0x6d2b79f5) | 0;
      let t = Math.imul(state ^ (state >>> 15), 1 | state);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) % below;
    };
  }
  interface Row {
    client: number;
    publicAddress: number;
    firstPort: number;
    lastPort: number;
  }
  const site = (next: (below: number) => number): Row[] => {
    const rows: Row[] = [];
    for (let client = ip('10.42.0.2'); client < ip('10.42.0.2') + 300; client++) {
      if (next(4) === 0) continue;
      const first = 1024 + next(8) * 64;
      rows.push({
        client,
        publicAddress: ip('192.0.2.1') + next(3),
        firstPort: first,
        lastPort: first + 63,
      });
    }
    return rows;
  };
  /** The two maps after the delta's commands, run against the maps as `before` left them. */
  const afterDelta = (before: readonly Row[], delta: string) => {
    const clients = new Map(
      before.map((row) => [row.client, `${row.publicAddress}.${row.firstPort}-${row.lastPort}`]),
    );
    const others = new Map(before.map((row) => [row.client, `${row.publicAddress}`]));
    const commands = delta.matchAll(/^(add|delete) element ip tn (clients|others) \{\n([^}]*)\}/gm);
    for (const [, verb, map, body] of commands) {
      const target = map === 'clients' ? clients : others;
      for (const line of (body ?? '').split('\n').filter(Boolean)) {
        const [key, value] = line.trim().replace(/,$/, '').split(' : ');
        const client = ip(key ?? '');
        if (verb === 'delete') {
          // nft refuses to delete what is not there: so must the model.
          expect(target.has(client)).toBe(true);
          target.delete(client);
        } else {
          expect(target.has(client)).toBe(false);
          const [address, ports] = (value ?? '').split(' . ');
          target.set(client, `${ip(address ?? '')}${ports === undefined ? '' : `.${ports}`}`);
        }
      }
    }
    return { clients, others };
  };

  test.each([1, 2, 3, 4, 5, 6, 7, 8])(
    'seed %i: the delta turns before into after, touching only what changed',
    (seed) => {
      const next = random(seed);
      const before = site(next);
      const after = site(next);
      const delta = renderNftDelta(before, after, { ...options, table: 'tn' });
      const result = afterDelta(before, delta);
      expect(result.clients).toEqual(
        new Map(
          after.map((row) => [row.client, `${row.publicAddress}.${row.firstPort}-${row.lastPort}`]),
        ),
      );
      expect(result.others).toEqual(
        new Map(after.map((row) => [row.client, `${row.publicAddress}`])),
      );
      const unchanged = after.filter((row) =>
        before.some(
          (old) =>
            old.client === row.client &&
            old.publicAddress === row.publicAddress &&
            old.firstPort === row.firstPort,
        ),
      );
      for (const row of unchanged.slice(0, 20))
        expect(delta).not.toContain(`\t${formatIpv4(row.client)} :`);
      // Unsorted input gives the same text.
      expect(
        renderNftDelta([...before].reverse(), [...after].reverse(), { ...options, table: 'tn' }),
      ).toBe(delta);
    },
  );
});
