/**
 * The rendered text against the real iptables-restore and nft, inside a network namespace this
 * test makes and deletes (its only link is a veth pair with both ends inside it), so the host's
 * firewall is never touched.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { PortMap } from '../../src/mapping/types.js';
import { renderIptablesChains } from '../../src/render/iptables.js';
import { renderNftDelta, renderNftTable } from '../../src/render/nftables.js';
import { readAssignments } from '../../src/render/read-rules.js';
import { extractNatPart, mergeIntoRulesFile } from '../../src/render/rules-file.js';
import { arrayPortMap, ip, sequentialPortMap } from '../helpers/port-map.js';
import { readFixture } from './golden.js';
import { slash16Map, tinyMap, treeMap } from './maps.js';

const options = { outInterface: 'eth0' };
const FILE = '/etc/iptables/rules.v4';
/** Loading and listing 65k clients takes seconds, more on a busy machine. */
const SLASH16_TIMEOUT = 180_000;

function expected(map: PortMap) {
  return [...map.assignments()].map(({ client, publicAddress, firstPort, lastPort }) => ({
    client,
    publicAddress,
    firstPort,
    lastPort,
    proto: 'both',
  }));
}

function onePortMap(): PortMap {
  return sequentialPortMap({
    clients: [['10.42.0.2', '10.42.0.3']],
    publicAddresses: ['192.0.2.1'],
    blockSize: 1,
  });
}

// Making a namespace needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN); CI runs the suite as root.
const describeAsRoot = process.getuid?.() === 0 ? describe : describe.skip;

describeAsRoot('rendered rules in a real kernel (network namespace)', () => {
  const namespace = `tn-test-${randomBytes(4).toString('hex')}`;
  let created = false;

  function inNamespace(command: readonly string[], input?: string): string {
    return execFileSync('ip', ['netns', 'exec', namespace, ...command], {
      input,
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'pipe'],
      maxBuffer: 256 * 1024 * 1024,
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

  describe('iptables', () => {
    const eduvpn = readFixture('eduvpn3-rules.v4');

    test('the merged eduVPN file passes iptables-restore --test and loads', () => {
      const merged = mergeIntoRulesFile(eduvpn, renderIptablesChains(treeMap(), options), FILE);
      inNamespace(['iptables-restore', '--test'], merged);
      inNamespace(['iptables-restore'], merged);
      expect(inNamespace(['iptables', '-t', 'nat', '-S', 'POSTROUTING']).split('\n')).toEqual([
        '-P POSTROUTING ACCEPT',
        '-A POSTROUTING -o eth0 -j TNAT',
        '-A POSTROUTING -s 10.0.0.0/8 -o eth0 -j MASQUERADE',
        '-A POSTROUTING -s 172.16.0.0/12 -o eth0 -j MASQUERADE',
        '-A POSTROUTING -s 192.168.0.0/16 -o eth0 -j MASQUERADE',
        '',
      ]);
      expect(inNamespace(['iptables-save', '-t', 'filter'])).toContain(
        '-A FORWARD -i wg0 -o eth0 -j ACCEPT',
      );
    });

    test('iptables-save gives back our chains line for line, so kernel and file compare', () => {
      const ours = renderIptablesChains(treeMap(), options);
      inNamespace(['iptables-restore'], mergeIntoRulesFile(eduvpn, ours, FILE));
      const saved = inNamespace(['iptables-save', '-t', 'nat']);
      const part = extractNatPart(saved, 'iptables-save');
      expect(part.jump).toBe(ours.jump);
      expect(new Map([...part.chains].sort())).toEqual(new Map([...ours.chains].sort()));
      expect(readAssignments(saved).assignments).toEqual(expected(treeMap()));
    });

    test('one-port blocks load and read back', () => {
      const map = onePortMap();
      inNamespace(
        ['iptables-restore'],
        mergeIntoRulesFile(eduvpn, renderIptablesChains(map, options), FILE),
      );
      const saved = inNamespace(['iptables-save', '-t', 'nat']);
      expect(readAssignments(saved).assignments).toEqual(expected(map));
    });

    test('restoring a smaller map leaves none of the old chains behind', () => {
      inNamespace(
        ['iptables-restore'],
        mergeIntoRulesFile(eduvpn, renderIptablesChains(treeMap(), options), FILE),
      );
      inNamespace(
        ['iptables-restore'],
        mergeIntoRulesFile(eduvpn, renderIptablesChains(tinyMap(), options), FILE),
      );
      const part = extractNatPart(inNamespace(['iptables-save', '-t', 'nat']));
      expect([...part.chains.keys()]).toEqual(['TNAT']);
    });

    test(
      'a full /16 loads and reads back',
      () => {
        const map = slash16Map();
        inNamespace(
          ['iptables-restore'],
          mergeIntoRulesFile(eduvpn, renderIptablesChains(map, options), FILE),
        );
        const read = readAssignments(inNamespace(['iptables-save', '-t', 'nat']));
        expect(read.assignments).toHaveLength(65533);
        expect(read.assignments).toEqual(expected(map));
      },
      SLASH16_TIMEOUT,
    );
  });

  describe('nftables', () => {
    test('the table passes nft -c, loads, loads again over itself and lists its elements', () => {
      const text = renderNftTable(treeMap(), options);
      inNamespace(['nft', '-c', '-f', '-'], text);
      inNamespace(['nft', '-f', '-'], text);
      inNamespace(['nft', '-f', '-'], text);
      const listed = inNamespace(['nft', 'list', 'table', 'ip', 'traceable_nat']);
      expect(listed).toContain('10.42.0.2 : 192.0.2.1 . 63488-65535');
      expect(listed).toContain('10.43.7.3 : 198.51.100.7');
      expect(listed).toContain('type nat hook postrouting priority srcnat - 10; policy accept;');
      expect(readAssignments(listed).assignments).toEqual(expected(treeMap()));
    });

    test('an empty map loads', () => {
      const text = renderNftTable(arrayPortMap([], 256), {
        ...options,
        table: 'traceable_nat_empty',
      });
      inNamespace(['nft', '-c', '-f', '-'], text);
      inNamespace(['nft', '-f', '-'], text);
      expect(
        inNamespace(['nft', 'list', 'map', 'ip', 'traceable_nat_empty', 'clients']),
      ).not.toContain('elements');
    });

    test('one-port blocks load and read back', () => {
      const map = onePortMap();
      inNamespace(
        ['nft', '-f', '-'],
        renderNftTable(map, { ...options, table: 'traceable_nat_one' }),
      );
      const listed = inNamespace(['nft', 'list', 'map', 'ip', 'traceable_nat_one', 'clients']);
      expect(readAssignments(listed).assignments).toEqual(expected(map));
    });

    test('a delta for one moved client changes exactly that element', () => {
      inNamespace(['nft', '-f', '-'], renderNftTable(treeMap(), options));
      const moved = [...treeMap().assignments()].map((entry) =>
        entry.client === ip('10.42.0.20')
          ? { ...entry, publicAddress: ip('198.51.100.7'), firstPort: 1024, lastPort: 3071 }
          : entry,
      );
      const after = arrayPortMap(moved, 2048);
      const delta = renderNftDelta(treeMap(), after, options);
      inNamespace(['nft', '-c', '-f', '-'], delta);
      inNamespace(['nft', '-f', '-'], delta);
      const listed = inNamespace(['nft', 'list', 'table', 'ip', 'traceable_nat']);
      expect(readAssignments(listed).assignments).toEqual(expected(after));
      expect(listed).toContain('10.42.0.20 : 198.51.100.7 . 1024-3071');
    });

    test(
      'a full /16 loads and reads back',
      () => {
        const map = slash16Map();
        inNamespace(['nft', '-f', '-'], renderNftTable(map, options));
        const read = readAssignments(
          inNamespace(['nft', 'list', 'map', 'ip', 'traceable_nat', 'clients']),
        );
        expect(read.assignments).toEqual(expected(map));
      },
      SLASH16_TIMEOUT,
    );
  });
});
