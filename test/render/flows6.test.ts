/**
 * Real IPv6 TCP and UDP flows through the rendered rules (ip6tables and nftables, port blocks
 * and prefix mode): a client namespace with VPN client addresses, a gateway that forwards and
 * translates, and a server that reports the source address and port it sees. The namespaces
 * are made here and deleted afterwards; none is linked to the host's.
 */
import { formatIpv6 } from '../../src/net/ipv6.js';
import type { Map6 } from '../../src/mapping/map6.js';
import { renderIp6tablesChains } from '../../src/render/iptables6.js';
import { renderNatTable } from '../../src/render/iptables.js';
import { renderNftTable6 } from '../../src/render/nftables6.js';
import { mergeIntoRulesFile } from '../../src/render/rules-file.js';
import { ip6 } from '../mapping/fixtures6.js';
import { createTopology6, type Flow, type Topology6 } from '../helpers/flows6.js';
import { prefixMap6, treeMap6 } from './maps6.js';

const CLIENTS = ['fd87:12::2', 'fd87:12::3c', 'fd87:13::4'];
/** In a client range but no client (beyond the /26's twins): eduVPN's masquerade takes it. */
const STRANGER = 'fd87:12::ff';
/** eduVPN's IPv6 NAT, as its rules.v6 and nftables.conf have it. */
const EDUVPN_RULES_V6 =
  '*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -s fc00::/7 -o eth0 -j MASQUERADE\nCOMMIT\n';
const EDUVPN_NFT =
  'table inet filter {\n\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tip6 saddr fc00::/7 oifname "eth0" masquerade\n\t}\n}\n';
const PREFIX_CLIENTS = ['fd87:12:0:1::2', 'fd87:12:0:1::3c', 'fd87:12:0:2::6'];

// Namespaces need root (CAP_SYS_ADMIN, CAP_NET_ADMIN); CI runs the suite as root.
const describeAsRoot = process.getuid?.() === 0 ? describe : describe.skip;

describeAsRoot('IPv6 flows through the rendered rules (network namespaces)', () => {
  let net: Topology6;
  const exec = (where: string, args: readonly string[], input?: string) =>
    net.exec(where, args, input);
  const flows = (clients: readonly string[]) => net.flows(clients);

  beforeAll(() => {
    net = createTopology6({
      clients: [...CLIENTS, STRANGER, ...PREFIX_CLIENTS],
      clientRoute: 'fd87::/16',
      publicRoute: '2001:db8:100::/56',
    });
  });

  afterAll(() => {
    (net as Topology6 | undefined)?.destroy();
  });

  function flushGateway() {
    exec(net.gateway, ['nft', 'flush', 'ruleset']);
    exec(net.gateway, ['conntrack', '-F'], '');
  }

  function expectPortBlocks(map: Map6, all: readonly Flow[]) {
    expect(all).toHaveLength((CLIENTS.length + 1) * 3);
    // The stranger was translated by eduVPN's masquerade (the server has no route back to fd87::).
    const masqueraded = all.filter(
      (flow) => map.reverse(ip6(flow.address), flow.port) === undefined,
    );
    expect(masqueraded.length).toBeLessThanOrEqual(3);
    for (const flow of masqueraded) expect(flow.address).toMatch(/^2001:db8::[12]$/);
    const seen = all.filter((flow) => !masqueraded.includes(flow));
    expect(seen).toHaveLength(CLIENTS.length * 3);
    for (const flow of seen) {
      expect(map.reverse(ip6(flow.address), flow.port)).toBeDefined();
    }
    // Every client's flows lie in its own block on its own address.
    const owners = new Set(
      seen.map((flow) => formatIpv6(map.reverse(ip6(flow.address), flow.port)?.client ?? 0n)),
    );
    expect([...owners].sort()).toEqual([...CLIENTS].sort());
    expect(seen.filter((flow) => flow.proto === 'tcp')).toHaveLength(CLIENTS.length);
  }

  test("ip6tables port blocks merged before eduVPN's MASQUERADE: each flow leaves from its client's block", async () => {
    flushGateway();
    const ours = renderIp6tablesChains(treeMap6(), { outInterface: 'eth0' });
    exec(net.gateway, ['ip6tables-restore'], mergeIntoRulesFile(EDUVPN_RULES_V6, ours, 'rules.v6'));
    expectPortBlocks(treeMap6(), await flows([...CLIENTS, STRANGER]));
  });

  test("nftables port blocks: the same through the table ip6, before eduVPN's masquerade", async () => {
    flushGateway();
    exec(
      net.gateway,
      ['nft', '-f', '-'],
      EDUVPN_NFT + renderNftTable6(treeMap6(), { outInterface: 'eth0' }),
    );
    expectPortBlocks(treeMap6(), await flows([...CLIENTS, STRANGER]));
  });

  test.each([
    ['ip6tables', (text: string) => exec(net.gateway, ['ip6tables-restore'], text), 'iptables'],
    ['nftables', (text: string) => exec(net.gateway, ['nft', '-f', '-'], text), 'nft'],
  ])('%s prefix mode: each client leaves from its own public address', async (_, load, kind) => {
    flushGateway();
    const map = prefixMap6();
    load(
      kind === 'nft'
        ? renderNftTable6(map, { outInterface: 'eth0' })
        : renderNatTable(renderIp6tablesChains(map, { outInterface: 'eth0' })),
    );
    const seen = await flows(PREFIX_CLIENTS);
    expect(seen).toHaveLength(PREFIX_CLIENTS.length * 3);
    for (const flow of seen) {
      expect(flow.address.startsWith('2001:db8:100:')).toBe(true);
    }
    expect(
      [
        ...new Set(seen.map((flow) => formatIpv6(map.reverse(ip6(flow.address))?.client ?? 0n))),
      ].sort(),
    ).toEqual([...PREFIX_CLIENTS].sort());
  });
});
