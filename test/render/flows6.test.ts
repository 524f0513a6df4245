/**
 * Real IPv6 TCP and UDP flows through the rendered rules (ip6tables and nftables, port blocks
 * and prefix mode): a client namespace with VPN client addresses, a gateway that forwards and
 * translates, and a server that reports the source address and port it sees. The namespaces
 * are made here and deleted afterwards; none is linked to the host's.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { formatIpv6 } from '../../src/net/ipv6.js';
import type { Map6 } from '../../src/mapping/map6.js';
import { renderIp6tablesChains } from '../../src/render/iptables6.js';
import { renderNatTable } from '../../src/render/iptables.js';
import { renderNftTable6 } from '../../src/render/nftables6.js';
import { mergeIntoRulesFile } from '../../src/render/rules-file.js';
import { ip6 } from '../mapping/fixtures6.js';
import { prefixMap6, treeMap6 } from './maps6.js';

const SERVER = '2001:db8::99';
/** Two UDP datagrams from each client, then one TCP connection each; bounded by `timeout`. */
const SERVER_SCRIPT = String.raw`
import socket, sys, select
want = int(sys.argv[1])
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.bind(('${SERVER}', 5555))
t = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind(('${SERVER}', 5556)); t.listen(64)
print('ready', flush=True)
seen = 0
while seen < want:
    ready, _, _ = select.select([u, t], [], [], 10)
    if not ready: break
    for s in ready:
        if s is u:
            _, peer = u.recvfrom(100); print('udp', peer[0], peer[1], flush=True)
        else:
            c, peer = t.accept(); print('tcp', peer[0], peer[1], flush=True); c.close()
        seen += 1
`;
const CLIENT_SCRIPT = String.raw`
import socket, sys
for src in sys.argv[1:]:
    for _ in range(2):
        u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.bind((src, 0)); u.sendto(b'x', ('${SERVER}', 5555))
for src in sys.argv[1:]:
    t = socket.socket(socket.AF_INET6, socket.SOCK_STREAM); t.settimeout(5); t.bind((src, 0)); t.connect(('${SERVER}', 5556)); t.close()
`;

interface Flow {
  readonly proto: string;
  readonly address: string;
  readonly port: number;
}

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
  const id = `tn6${randomBytes(3).toString('hex')}`;
  const ns = { client: `${id}-c`, gateway: `${id}-g`, server: `${id}-s` };
  const made: string[] = [];

  function exec(where: string, args: readonly string[], input?: string): string {
    return execFileSync('ip', ['netns', 'exec', where, ...args], {
      input: input ?? '',
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: 30_000,
    });
  }

  beforeAll(() => {
    for (const name of Object.values(ns)) {
      execFileSync('ip', ['netns', 'add', name]);
      made.push(name);
    }
    execFileSync('ip', [
      'link',
      'add',
      'vpn0',
      'netns',
      ns.client,
      'type',
      'veth',
      'peer',
      'name',
      'vpn0',
      'netns',
      ns.gateway,
    ]);
    execFileSync('ip', [
      'link',
      'add',
      'eth0',
      'netns',
      ns.gateway,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      ns.server,
    ]);
    const batch = (where: string, lines: string[]) =>
      exec(where, ['ip', '-batch', '-'], lines.join('\n') + '\n');
    batch(ns.client, [
      'link set lo up',
      'link set vpn0 up',
      ...[...CLIENTS, STRANGER, ...PREFIX_CLIENTS].map(
        (address) => `address add ${address}/128 dev vpn0 nodad`,
      ),
      'route add ::/0 via fe80::1 dev vpn0',
    ]);
    batch(ns.gateway, [
      'link set lo up',
      'link set vpn0 up',
      'link set eth0 up',
      'address add 2001:db8::1/64 dev eth0 nodad',
      'address add 2001:db8::2/64 dev eth0 nodad',
      'address add fe80::1/64 dev vpn0 nodad',
      'route add fd87::/16 dev vpn0',
    ]);
    exec(ns.gateway, ['sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
    // The server routes the public prefix back to the gateway, never the client addresses.
    batch(ns.server, [
      'link set lo up',
      'link set eth0 up',
      `address add ${SERVER}/64 dev eth0 nodad`,
      'route add 2001:db8:100::/56 via 2001:db8::1',
    ]);
  });

  afterAll(() => {
    for (const name of made) {
      try {
        execFileSync('ip', ['netns', 'del', name]);
      } catch {
        // already gone
      }
    }
  });

  /** The (protocol, address, port) the server saw for each flow, in arrival order. */
  async function flows(clients: readonly string[]): Promise<Flow[]> {
    const server = spawn('ip', [
      'netns',
      'exec',
      ns.server,
      'timeout',
      '20',
      'python3',
      '-c',
      SERVER_SCRIPT,
      String(clients.length * 3),
    ]);
    let output = '';
    let errors = '';
    server.stderr.on('data', (chunk: Buffer) => {
      errors += chunk.toString();
    });
    const ended = new Promise<void>((resolve) => {
      server.on('close', () => {
        resolve();
      });
    });
    // Send only once the server listens: a datagram sent before that is lost.
    await new Promise<void>((resolve, reject) => {
      server.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('ready')) resolve();
      });
      server.on('close', () => {
        reject(new Error(`server ended before listening: ${output}${errors}`));
      });
    });
    exec(ns.client, ['timeout', '15', 'python3', '-c', CLIENT_SCRIPT, ...clients]);
    await ended;
    return output
      .split('\n')
      .filter((line) => line.startsWith('udp') || line.startsWith('tcp'))
      .map((line) => {
        const [proto = '', address = '', port = ''] = line.split(' ');
        return { proto, address, port: Number(port) };
      });
  }

  function flushGateway() {
    exec(ns.gateway, ['nft', 'flush', 'ruleset']);
    exec(ns.gateway, ['conntrack', '-F'], '');
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
    exec(ns.gateway, ['ip6tables-restore'], mergeIntoRulesFile(EDUVPN_RULES_V6, ours, 'rules.v6'));
    expectPortBlocks(treeMap6(), await flows([...CLIENTS, STRANGER]));
  });

  test("nftables port blocks: the same through the table ip6, before eduVPN's masquerade", async () => {
    flushGateway();
    exec(
      ns.gateway,
      ['nft', '-f', '-'],
      EDUVPN_NFT + renderNftTable6(treeMap6(), { outInterface: 'eth0' }),
    );
    expectPortBlocks(treeMap6(), await flows([...CLIENTS, STRANGER]));
  });

  test.each([
    ['ip6tables', (text: string) => exec(ns.gateway, ['ip6tables-restore'], text), 'iptables'],
    ['nftables', (text: string) => exec(ns.gateway, ['nft', '-f', '-'], text), 'nft'],
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
