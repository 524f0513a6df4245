/**
 * Isolated network namespaces for kernel tests: a client (with any number of VPN client
 * addresses), a gateway (the eduVPN server: its `vpn0` faces the clients, its `eth0` the
 * "internet") and a server on the far side. Nothing is connected to the host's namespace; the
 * server has no route back to the client addresses, so its replies arrive only through NAT.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export const PUBLIC_ADDRESS = '192.0.2.1';
export const SERVER_ADDRESS = '192.0.2.2';
export const CLIENT_GATEWAY = '10.42.0.1';

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

export function sh(args: readonly string[], input?: string): string {
  return execFileSync(args[0] ?? 'false', args.slice(1), {
    encoding: 'utf8',
    input: input ?? '',
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

export interface Topology {
  readonly client: string;
  readonly gateway: string;
  readonly server: string;
  /** Runs a command inside a namespace and returns its stdout. */
  exec(ns: string, args: readonly string[], input?: string): string;
  /** Starts a long-running command inside a namespace. */
  spawn(ns: string, args: readonly string[]): ChildProcess;
  addClientAddresses(addresses: readonly string[]): void;
  destroy(): void;
}

export function createTopology(clientAddresses: readonly string[], prefix = 16): Topology {
  const id = `tn${randomBytes(3).toString('hex')}`;
  const names = { client: `${id}-c`, gateway: `${id}-g`, server: `${id}-s` };
  const exec = (ns: string, args: readonly string[], input?: string): string =>
    sh(['ip', 'netns', 'exec', ns, ...args], input);
  const topology: Topology = {
    ...names,
    exec,
    spawn: (ns, args) =>
      spawn('ip', ['netns', 'exec', ns, ...args], { stdio: ['pipe', 'pipe', 'pipe'] }),
    addClientAddresses(addresses) {
      const batch = addresses
        .map((address) => `address add ${address}/${prefix} dev vpn0`)
        .join('\n');
      exec(names.client, ['ip', '-batch', '-'], batch + '\n');
    },
    destroy() {
      for (const ns of Object.values(names)) {
        try {
          sh(['ip', 'netns', 'del', ns]);
        } catch {
          // already gone
        }
      }
    },
  };
  try {
    for (const ns of Object.values(names)) sh(['ip', 'netns', 'add', ns]);
    // Each veth pair is created inside the gateway and one end moved to its peer namespace.
    exec(names.gateway, [
      'ip',
      'link',
      'add',
      'vpn0',
      'type',
      'veth',
      'peer',
      'name',
      'vpn0',
      'netns',
      names.client,
    ]);
    exec(names.gateway, [
      'ip',
      'link',
      'add',
      'eth0',
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      names.server,
    ]);
    exec(names.gateway, ['ip', 'address', 'add', `${CLIENT_GATEWAY}/${prefix}`, 'dev', 'vpn0']);
    exec(names.gateway, ['ip', 'address', 'add', `${PUBLIC_ADDRESS}/24`, 'dev', 'eth0']);
    exec(names.server, ['ip', 'address', 'add', `${SERVER_ADDRESS}/24`, 'dev', 'eth0']);
    for (const ns of Object.values(names)) {
      exec(ns, ['ip', 'link', 'set', 'lo', 'up']);
      exec(ns, ['ip', 'link', 'set', ns === names.server ? 'eth0' : 'vpn0', 'up']);
    }
    exec(names.gateway, ['ip', 'link', 'set', 'eth0', 'up']);
    exec(names.gateway, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    if (clientAddresses.length > 0) {
      topology.addClientAddresses(clientAddresses);
      exec(names.client, ['ip', 'route', 'add', 'default', 'via', CLIENT_GATEWAY]);
    }
    return topology;
  } catch (error) {
    topology.destroy();
    throw error;
  }
}
