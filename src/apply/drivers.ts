/**
 * One driver per backend: what the kernel holds of our ruleset now, and the smallest atomic
 * change that makes it hold the plan (iptables: only the chains that differ; nftables: element
 * deletes and adds, or the whole table when it is missing or its chain is not ours as planned).
 */
import type { Config } from '../config.js';
import { IptablesKernel } from '../netfilter/iptables.js';
import {
  buildIptablesPayload,
  readKernelNat,
  type KernelNat,
} from '../netfilter/iptables-payload.js';
import { NftKernel } from '../netfilter/nftables.js';
import type { NftTableView } from '../netfilter/nft-json.js';
import type { PortMap } from '../mapping/types.js';
import type { CommandRunner } from '../netfilter/runner.js';
import { renderNftDelta } from '../render/nftables.js';
import { readAssignments, type ReadAssignment } from '../render/read-rules.js';
import type { RulesetPlan } from './plan.js';

export interface KernelView {
  /** The kernel holds exactly the planned ruleset. */
  readonly right: boolean;
  /** The client bindings the kernel holds now (for conntrack after a switch); read on demand. */
  assignments(): readonly ReadAssignment[];
}

export interface KernelChange {
  /** What was loaded, for the log: chains rewritten or elements changed. */
  readonly summary: Readonly<Record<string, number | boolean>>;
}

export interface BackendDriver {
  /**
   * What the kernel holds. With `trusted`, the plan that this process applied last is taken as
   * the kernel's state without reading it back (the daemon's change path; its periodic check
   * reads the kernel and repairs any drift).
   */
  read(plan: RulesetPlan, trusted?: RulesetPlan): Promise<KernelView>;
  /**
   * Brings the kernel to the plan in one transaction; `force` rewrites all of our part.
   * `onSpawn` is told the pid of the process that changes the kernel.
   */
  apply(plan: RulesetPlan, force: boolean, onSpawn?: (pid: number) => void): Promise<KernelChange>;
}

function iptablesDriver(runner: CommandRunner, config: Config): BackendDriver {
  const kernel = new IptablesKernel(runner, config.firewall.iptables);
  let state: KernelNat | undefined;
  return {
    async read(plan, trusted) {
      if (trusted?.iptables) {
        state = {
          chains: trusted.iptables.chains,
          jumps: [trusted.iptables.jump],
          jumpFirst: true,
        };
        const right =
          plan.iptables !== undefined &&
          buildIptablesPayload(state, plan.iptables).payload === undefined;
        return { right, assignments: () => assignmentsOf(trusted.map) };
      }
      const save = await kernel.saveNat();
      state = readKernelNat(save);
      const right =
        plan.iptables !== undefined &&
        buildIptablesPayload(state, plan.iptables).payload === undefined;
      // Read once on demand: the removal guard and the conntrack step both ask.
      let held: readonly ReadAssignment[] | undefined;
      return { right, assignments: () => (held ??= readAssignments(save).assignments) };
    },
    async apply(plan, force, onSpawn) {
      const desired = plan.iptables;
      if (!desired) throw new Error('iptables driver used with a plan for another backend');
      state ??= readKernelNat(await kernel.saveNat());
      // Forced: every chain counts as changed, and the jump is placed again.
      const base: KernelNat = force
        ? {
            chains: new Map(
              [...state.chains.keys(), ...desired.chains.keys()].map((name) => [name, ['-']]),
            ),
            jumps: state.jumps,
            jumpFirst: false,
          }
        : state;
      const { payload, rewritten, removed, jumpRepaired } = buildIptablesPayload(base, desired);
      if (payload !== undefined) await kernel.restore(payload, onSpawn);
      state = undefined;
      return {
        summary: { chainsRewritten: rewritten.length, chainsRemoved: removed.length, jumpRepaired },
      };
    },
  };
}

/** `srcnat - 10`: nft(8) gives srcnat the number 100; ours must come before eduVPN's masquerade. */
const NFT_PRIORITY = 90;

/** Our chain as renderNftTable writes it: hooked before srcnat, the two snat-to-map rules. */
function chainRight(table: NftTableView, outInterface: string): boolean {
  const [ports, others, ...extra] = table.rules;
  return (
    table.chain?.type === 'nat' &&
    table.chain.hook === 'postrouting' &&
    table.chain.priority === NFT_PRIORITY &&
    extra.length === 0 &&
    ports?.outInterface === outInterface &&
    ports.l4protoOp === '==' &&
    ports.snatMap === '@clients' &&
    others?.outInterface === outInterface &&
    others.l4protoOp === '!=' &&
    others.snatMap === '@others'
  );
}

function assignmentsOf(map: PortMap): ReadAssignment[] {
  return [...map.assignments()].map((assignment) => ({
    client: assignment.client,
    publicAddress: assignment.publicAddress,
    firstPort: assignment.block.first,
    lastPort: assignment.block.last,
    proto: 'both' as const,
  }));
}

function holdsPlan(held: readonly ReadAssignment[], map: PortMap): boolean {
  if (held.length !== map.clientCount) return false;
  let index = 0;
  for (const assignment of map.assignments()) {
    const kernel = held[index++];
    if (
      kernel?.client !== assignment.client ||
      kernel.publicAddress !== assignment.publicAddress ||
      kernel.firstPort !== assignment.block.first ||
      kernel.lastPort !== assignment.block.last
    ) {
      return false;
    }
  }
  return true;
}

function nftDriver(runner: CommandRunner, config: Config): BackendDriver {
  const kernel = new NftKernel(runner, config.firewall.nftTable);
  const options = { outInterface: config.nat.outInterface, table: config.firewall.nftTable };
  let table: NftTableView | undefined;
  let read = false;
  const load = async () => {
    if (!read) table = await kernel.readTable();
    read = true;
    return table;
  };
  return {
    async read(plan, trusted) {
      read = false;
      if (trusted) {
        const held = assignmentsOf(trusted.map);
        table = { chain: undefined, rules: [], clients: held, others: held.length };
        read = true;
        // Our chain as planned: only the elements can differ.
        return { right: holdsPlan(held, plan.map), assignments: () => held };
      }
      const current = await load();
      const held = current?.clients ?? [];
      const right =
        current !== undefined &&
        chainRight(current, options.outInterface) &&
        current.others === held.length &&
        holdsPlan(held, plan.map);
      return { right, assignments: () => held };
    },
    async apply(plan, force, onSpawn) {
      const current = await load();
      const whole =
        force ||
        current === undefined ||
        (current.chain !== undefined && !chainRight(current, options.outInterface));
      const transaction = whole
        ? plan.fileText
        : renderNftDelta(current.clients, plan.map, options);
      if (transaction !== '') await kernel.load(transaction, onSpawn);
      read = false;
      return {
        summary: { wholeTable: whole, transactionLines: transaction.split('\n').length - 1 },
      };
    },
  };
}

export function driverFor(config: Config, runner: CommandRunner): BackendDriver {
  return config.firewall.backend === 'nftables'
    ? nftDriver(runner, config)
    : iptablesDriver(runner, config);
}
