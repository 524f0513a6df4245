/**
 * The benchmark's own network namespaces, none connected to the host's: a lone namespace for
 * apply and daemon timings, and for connection costs a client (VPN client addresses), a gateway
 * (the eduVPN server: `vpn0` towards the clients, `eth0` towards the internet) and a server.
 * The server reaches the public addresses only through the gateway, so replies return through NAT.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Cleanup } from './cleanup.js';
import { run, runIn } from './shell.js';

export const GATEWAY_CLIENT_SIDE = '10.42.0.1';
export const GATEWAY_ADDRESS = '192.0.2.1';
export const SERVER_ADDRESS = '192.0.2.2';
/** Where the benchmark's public (SNAT) addresses come from: 198.18.0.0/15, for benchmarks. */
export const PUBLIC_RANGE = '198.18.0.0/15';
/** The reference client: outside every pool, only MASQUERADE handles it. */
export const REFERENCE_CLIENT = '10.99.0.2';
export const REFERENCE_NET = '10.99.0.0/24';
const REFERENCE_GATEWAY = '10.99.0.1/24';

export interface Namespace {
  readonly name: string;
  /** Runs a command inside the namespace; returns its stdout. */
  exec(args: readonly string[], input?: string): string;
  /** Starts a long-running command inside the namespace (killed by the cleanup). */
  spawn(args: readonly string[]): ChildProcess;
  /** Kills what was started in it and deletes it now rather than at the end. */
  remove(): void;
}

function uniquePrefix(): string {
  return `tnbench-${randomBytes(3).toString('hex')}`;
}

function namespace(cleanup: Cleanup, name: string): Namespace {
  run(['ip', 'netns', 'add', name]);
  const children = new Set<ChildProcess>();
  const remove = cleanup.add(`namespace ${name}`, () => {
    for (const child of children) child.kill('SIGKILL');
    run(['ip', 'netns', 'del', name]);
  });
  runIn(name, ['ip', 'link', 'set', 'lo', 'up']);
  return {
    name,
    exec: (args, input) => runIn(name, args, input),
    spawn(args) {
      // `ip netns exec` execs the program, so the child's pid is the program's own.
      const child = spawn('ip', ['netns', 'exec', name, ...args], {
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      children.add(child);
      child.once('exit', () => children.delete(child));
      return child;
    },
    remove,
  };
}

/** One namespace of its own, for applies and the daemon (no traffic needed). */
export function createLoneNamespace(cleanup: Cleanup, role: string): Namespace {
  return namespace(cleanup, `${uniquePrefix()}-${role}`);
}

export interface ConnectTopology {
  readonly client: Namespace;
  readonly gateway: Namespace;
  readonly server: Namespace;
  /** Where the clients connect to. */
  readonly serverAddress: string;
  /** Deletes the three namespaces now (the cleanup would otherwise do it at the end). */
  destroy(): void;
}

/**
 * The addresses of one family's topology and the `ip -batch` lines that set each namespace up.
 * The gateway's address towards the server is what MASQUERADE translates to.
 */
export interface ConnectSite {
  readonly family: 4 | 6;
  readonly gatewayAddress: string;
  readonly serverAddress: string;
  /** The server's listening address for node's `listen({ host })`. */
  readonly anyAddress: string;
  /** The reference client: outside every pool, only MASQUERADE handles it. */
  readonly referenceClient: string;
  readonly referenceNet: string;
  readonly forwarding: string;
  clientLines(clientAddresses: readonly string[]): string[];
  gatewayLines(): string[];
  serverLines(): string[];
}

/** IPv4: the client holds its addresses inside 10.42.0.0/16 and the reference address. */
export const SITE4: ConnectSite = {
  family: 4,
  gatewayAddress: GATEWAY_ADDRESS,
  serverAddress: SERVER_ADDRESS,
  anyAddress: '0.0.0.0',
  referenceClient: REFERENCE_CLIENT,
  referenceNet: REFERENCE_NET,
  forwarding: 'net.ipv4.ip_forward=1',
  clientLines: (clientAddresses) => [
    ...clientAddresses.map((address) => `address add ${address}/16 dev vpn0`),
    `address add ${REFERENCE_CLIENT}/24 dev vpn0`,
    'link set vpn0 up',
    `route add default via ${GATEWAY_CLIENT_SIDE}`,
  ],
  gatewayLines: () => [
    `address add ${GATEWAY_CLIENT_SIDE}/16 dev vpn0`,
    `address add ${REFERENCE_GATEWAY} dev vpn0`,
    `address add ${GATEWAY_ADDRESS}/24 dev eth0`,
    'link set vpn0 up',
    'link set eth0 up',
  ],
  serverLines: () => [
    `address add ${SERVER_ADDRESS}/24 dev eth0`,
    'link set eth0 up',
    `route add ${PUBLIC_RANGE} via ${GATEWAY_ADDRESS}`,
  ],
};

/** The IPv6 client range of the benchmark's pool (the twin of 10.42.0.0/16). */
export const CLIENT_RANGE6 = 'fd42::/64';
/**
 * Where the IPv6 public addresses and the public prefix come from: 2001:db8:100::/40, inside
 * the documentation prefix (RFC 3849); the server routes it back to the gateway.
 */
export const PUBLIC_RANGE6 = '2001:db8:100::/40';
const REFERENCE_NET6 = 'fd99::/64';

/**
 * IPv6, as test/helpers/flows6.ts builds it: every client address a /128 (`nodad`: no
 * duplicate address detection to wait for), the client's default route via the gateway's
 * link-local address, the gateway routing the client ranges to vpn0.
 */
export const SITE6: ConnectSite = {
  family: 6,
  gatewayAddress: '2001:db8::1',
  serverAddress: '2001:db8::99',
  anyAddress: '::',
  referenceClient: 'fd99::2',
  referenceNet: REFERENCE_NET6,
  forwarding: 'net.ipv6.conf.all.forwarding=1',
  clientLines: (clientAddresses) => [
    ...[...clientAddresses, 'fd99::2'].map(
      (address) => `address add ${address}/128 dev vpn0 nodad`,
    ),
    'link set vpn0 up',
    'route add ::/0 via fe80::1 dev vpn0',
  ],
  gatewayLines: () => [
    'address add fe80::1/64 dev vpn0 nodad',
    'address add 2001:db8::1/64 dev eth0 nodad',
    'link set vpn0 up',
    'link set eth0 up',
    `route add ${CLIENT_RANGE6} dev vpn0`,
    `route add ${REFERENCE_NET6} dev vpn0`,
  ],
  serverLines: () => [
    'address add 2001:db8::99/64 dev eth0 nodad',
    'link set eth0 up',
    `route add ${PUBLIC_RANGE6} via 2001:db8::1`,
  ],
};

/**
 * Client, gateway and server. The client holds `clientAddresses` and the reference address;
 * the gateway forwards and holds the rules; the server routes the public range back to the
 * gateway.
 */
export function createConnectTopology(
  cleanup: Cleanup,
  clientAddresses: readonly string[],
  site: ConnectSite = SITE4,
): ConnectTopology {
  const prefix = uniquePrefix();
  const client = namespace(cleanup, `${prefix}-c`);
  const gateway = namespace(cleanup, `${prefix}-g`);
  const server = namespace(cleanup, `${prefix}-s`);
  const veth = (local: string, peer: Namespace) =>
    gateway.exec([
      'ip',
      'link',
      'add',
      local,
      'type',
      'veth',
      'peer',
      'name',
      local,
      'netns',
      peer.name,
    ]);
  const batch = (ns: Namespace, lines: readonly string[]) =>
    ns.exec(['ip', '-batch', '-'], [...lines, ''].join('\n'));
  veth('vpn0', client);
  veth('eth0', server);
  batch(gateway, site.gatewayLines());
  gateway.exec(['sysctl', '-qw', site.forwarding]);
  batch(client, site.clientLines(clientAddresses));
  batch(server, site.serverLines());
  return {
    client,
    gateway,
    server,
    serverAddress: site.serverAddress,
    destroy() {
      for (const ns of [server, gateway, client]) ns.remove();
    },
  };
}
