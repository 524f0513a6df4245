/**
 * Issue 11, item 2: removing two profiles far apart (10.50.0.0/25 and 172.20.0.0/24) once
 * deleted the conntrack entries of every host between them. Here real conntrack entries are
 * inserted in a gateway namespace (`conntrack -I`, no traffic needed): clients of the removed
 * profiles, a kept client, and strangers (documentation addresses, the server itself, private
 * hosts between and beside the pools, translated or not). The real CLI removes the two
 * profiles; only the removed clients' translated entries may go.
 */
import { createTopology, isRoot, PUBLIC_ADDRESS, type Topology } from '../helpers/netns.js';
import { createSandbox, runCli, type ProfileSpec, type Sandbox } from '../helpers/sandbox.js';

const KEPT: ProfileSpec = { id: 'kept', wireguard: '10.42.0.0/22' };
const SMALL: ProfileSpec = { id: 'small', wireguard: '10.50.0.0/25' };
const WIDE: ProfileSpec = {
  id: 'wide',
  openvpn: { range: '172.20.0.0/24', udp: [1194], tcp: [1194] },
};

/** Orig source, whether the entry was source-translated (as our SNAT rules would have done it). */
const REMOVED_CLIENTS = ['10.50.0.2', '10.50.0.126', '172.20.0.2', '172.20.0.126', '172.20.0.130'];
const KEPT_CLIENTS = ['10.42.0.2', '10.42.3.254'];
const STRANGERS = [
  '198.51.100.7', // an OpenVPN-over-TCP client's transport connection
  '203.0.113.9', // an admin's SSH session
  '93.184.216.34',
  '130.1.1.1',
  '11.1.1.1',
  '10.50.0.1', // the server's own address in the removed subnet
  '10.50.0.200', // beside the /25, inside its /24
  '10.60.0.5', // a private host between the two pools
  '172.16.0.9',
  '172.20.1.2', // just after the /24
];

// Network namespaces and conntrack need root; CI runs as root.
const describeKernel = isRoot() ? describe : describe.skip;

describeKernel.each(['iptables', 'nftables'] as const)(
  'conntrack deletion stays inside the removed pools (%s)',
  (backend) => {
    let net: Topology;
    let sandbox: Sandbox;

    const insert = (source: string, sport: number, translated: boolean): void => {
      const args = ['conntrack', '-I', '-p', 'tcp', '-s', source, '-d', '198.51.100.80'];
      args.push('--sport', String(sport), '--dport', '443', '--state', 'ESTABLISHED');
      args.push('--timeout', '600');
      if (translated) args.push('--src-nat', PUBLIC_ADDRESS);
      net.exec(net.gateway, args);
    };
    /** The original source of every entry, with `+nat` when it was source-translated. */
    const entries = (): string[] =>
      net
        .exec(net.gateway, ['conntrack', '-L', '-p', 'tcp'])
        .split('\n')
        .filter((line) => line.includes('dport=443'))
        .map((line) => {
          const [, source, replyDestination] = /src=(\S+) .*? src=\S+ dst=(\S+)/.exec(line) ?? [];
          return `${source ?? '?'}${replyDestination === source ? '' : '+nat'}`;
        })
        .sort();

    beforeAll(() => {
      net = createTopology([]);
      sandbox = createSandbox(backend);
      sandbox.writeProfiles([KEPT, SMALL, WIDE]);
      // Removing every OpenVPN client is what the test is about, not the guard against it.
      sandbox.writeConfig({ nat: { portsPerClient: 32 }, firewall: { removalGuard: false } });
    });

    afterAll(() => {
      (net as Topology | undefined)?.destroy();
      (sandbox as Sandbox | undefined)?.remove();
    });

    test('removing two profiles deletes only their clients translated entries', () => {
      const first = runCli(net.gateway, ['apply', '--json', '--config', sandbox.configFile]);
      expect(first.stderr).toBe('');
      expect(first.status).toBe(0);

      let sport = 20000;
      for (const client of [...REMOVED_CLIENTS, ...KEPT_CLIENTS]) insert(client, sport++, true);
      // A removed client's own traffic to the server was never translated: nothing to fix.
      insert('10.50.0.3', sport++, false);
      for (const stranger of STRANGERS) {
        insert(stranger, sport++, false);
        insert(stranger, sport++, true);
      }
      const before = entries();
      expect(before).toHaveLength(REMOVED_CLIENTS.length + KEPT_CLIENTS.length + 1 + 20);

      sandbox.writeProfiles([KEPT]);
      const second = runCli(net.gateway, ['apply', '--json', '--config', sandbox.configFile]);
      expect(second.stderr).toBe('');
      expect(second.status).toBe(0);
      const result = JSON.parse(second.stdout) as Record<string, unknown>;
      expect(result.outcome).toBe('applied');
      expect(result.changedClients).toBe(125 + 2 * 125); // the /24 is split over two processes
      expect(result.conntrackDeleted).toBe(REMOVED_CLIENTS.length);

      const gone = REMOVED_CLIENTS.map((client) => `${client}+nat`);
      expect(entries()).toEqual(before.filter((entry) => !gone.includes(entry)));
    });
  },
);
