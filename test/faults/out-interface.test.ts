/**
 * Issue 11: a nonexistent nat.outInterface passed `check`, and its rules translate nothing.
 * `check` must fail with a sentence; `apply` still loads (an interface may appear later) but
 * warns. Runs the real CLI inside a gateway namespace whose interfaces the test made.
 */
import { createTopology, isRoot, type Topology } from '../helpers/netns.js';
import { createSandbox, runCli, type Sandbox } from '../helpers/sandbox.js';

// Network namespaces need root; CI runs as root.
const describeKernel = isRoot() ? describe : describe.skip;

describeKernel('nat.outInterface must exist in this network namespace', () => {
  let net: Topology;
  let sandbox: Sandbox;

  beforeAll(() => {
    net = createTopology([]);
    sandbox = createSandbox('iptables');
    sandbox.writeProfiles([{ id: 'alpha', wireguard: '10.42.0.0/24' }]);
  });
  afterAll(() => {
    (net as Topology | undefined)?.destroy();
    (sandbox as Sandbox | undefined)?.remove();
  });

  test('check fails for an interface that is not there, and names the ones that are', () => {
    sandbox.writeConfig({ nat: { outInterface: 'eth9' } });
    const result = runCli(net.gateway, ['check', '--config', sandbox.configFile]);
    expect(result.status).toBe(2);
    expect(result.stdout).toMatch(
      /^FAIL {2}outgoing interface: nat\.outInterface eth9 does not exist in this network namespace \(it has lo, vpn0, eth0\): set it to the interface towards the internet/m,
    );
  });

  test('check passes for the interface that is there', () => {
    sandbox.writeConfig({ nat: { outInterface: 'eth0' } });
    const result = runCli(net.gateway, ['check', '--config', sandbox.configFile]);
    expect(result.stdout).toMatch(
      /^ok {4}outgoing interface: eth0 exists in this network namespace$/m,
    );
    expect(result.stdout).not.toContain('FAIL');
    expect(result.status).toBe(0);
  });

  test('apply loads the rules for a missing interface but warns', () => {
    sandbox.writeConfig({ nat: { outInterface: 'eth9' } });
    const result = runCli(net.gateway, ['apply', '--config', sandbox.configFile]);
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/^applied: /);
    expect(result.stderr).toMatch(
      /^warning: nat\.outInterface eth9 does not exist in this network namespace .*; the rules are loaded all the same and act once it exists\n$/,
    );
    expect(net.exec(net.gateway, ['iptables-save', '-t', 'nat'])).toContain('-o eth9');
  });
});
