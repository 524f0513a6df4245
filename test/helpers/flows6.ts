/**
 * Real IPv6 flows for tests: a client namespace holding VPN client addresses, a gateway that
 * forwards (and translates, with whatever rules a test loads), and a server that reports the
 * source address and port it sees. The namespaces are made here and deleted by `destroy`; none
 * is linked to the host's.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export const SERVER6 = '2001:db8::99';
/** Two UDP datagrams from each client, then one TCP connection each; bounded by `timeout`. */
const SERVER_SCRIPT = String.raw`
import socket, sys, select
want = int(sys.argv[1])
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.bind(('${SERVER6}', 5555))
t = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind(('${SERVER6}', 5556)); t.listen(64)
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
        u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.bind((src, 0)); u.sendto(b'x', ('${SERVER6}', 5555))
for src in sys.argv[1:]:
    t = socket.socket(socket.AF_INET6, socket.SOCK_STREAM); t.settimeout(5); t.bind((src, 0)); t.connect(('${SERVER6}', 5556)); t.close()
`;

export interface Flow {
  readonly proto: string;
  readonly address: string;
  readonly port: number;
}

export interface Topology6 {
  readonly client: string;
  readonly gateway: string;
  readonly server: string;
  exec(where: string, args: readonly string[], input?: string): string;
  /** The (protocol, address, port) the server saw for each flow, in arrival order. */
  flows(clients: readonly string[]): Promise<Flow[]>;
  destroy(): void;
}

export interface Topology6Options {
  /** The client addresses (each a /128 on the client's vpn0). */
  readonly clients: readonly string[];
  /** Where the client addresses lie, routed by the gateway to vpn0. */
  readonly clientRoute: string;
  /** A public prefix the server routes back to the gateway (prefix mode), if any. */
  readonly publicRoute?: string;
}

export function createTopology6(options: Topology6Options): Topology6 {
  const id = `tn6${randomBytes(3).toString('hex')}`;
  const ns = { client: `${id}-c`, gateway: `${id}-g`, server: `${id}-s` };
  const made: string[] = [];
  const exec = (where: string, args: readonly string[], input?: string): string =>
    execFileSync('ip', ['netns', 'exec', where, ...args], {
      input: input ?? '',
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: 30_000,
    });
  const batch = (where: string, lines: readonly string[]) =>
    exec(where, ['ip', '-batch', '-'], lines.join('\n') + '\n');
  const destroy = () => {
    for (const name of made) {
      try {
        execFileSync('ip', ['netns', 'del', name]);
      } catch {
        // already gone
      }
    }
  };
  try {
    for (const name of Object.values(ns)) {
      execFileSync('ip', ['netns', 'add', name]);
      made.push(name);
    }
    const veth = (name: string, from: string, to: string) =>
      execFileSync(
        'ip',
        ['link', 'add', name, 'netns', from, 'type', 'veth'].concat([
          'peer',
          'name',
          name,
          'netns',
          to,
        ]),
      );
    veth('vpn0', ns.client, ns.gateway);
    veth('eth0', ns.gateway, ns.server);
    batch(ns.client, [
      'link set lo up',
      'link set vpn0 up',
      ...options.clients.map((address) => `address add ${address}/128 dev vpn0 nodad`),
      'route add ::/0 via fe80::1 dev vpn0',
    ]);
    batch(ns.gateway, [
      'link set lo up',
      'link set vpn0 up',
      'link set eth0 up',
      'address add 2001:db8::1/64 dev eth0 nodad',
      'address add 2001:db8::2/64 dev eth0 nodad',
      'address add fe80::1/64 dev vpn0 nodad',
      `route add ${options.clientRoute} dev vpn0`,
    ]);
    exec(ns.gateway, ['sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
    // The server routes the public prefix back to the gateway, never the client addresses.
    batch(ns.server, [
      'link set lo up',
      'link set eth0 up',
      `address add ${SERVER6}/64 dev eth0 nodad`,
      ...(options.publicRoute ? [`route add ${options.publicRoute} via 2001:db8::1`] : []),
    ]);
  } catch (error) {
    destroy();
    throw error;
  }

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

  return { ...ns, exec, flows, destroy };
}
