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
  read(plan: RulesetPlan): Promise<KernelView>;
  /** Brings the kernel to the plan in one transaction; `force` rewrites all of our part. */
  apply(plan: RulesetPlan, force: boolean): Promise<KernelChange>;
}

function iptablesDriver(runner: CommandRunner, config: Config): BackendDriver {
  const kernel = new IptablesKernel(runner, config.firewall.iptables);
  let state: KernelNat | undefined;
  return {
    async read(plan) {
      const save = await kernel.saveNat();
      state = readKernelNat(save);
      const right =
        plan.iptables !== undefined &&
        buildIptablesPayload(state, plan.iptables).payload === undefined;
      return { right, assignments: () => readAssignments(save).assignments };
    },
    async apply(plan, force) {
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
      if (payload !== undefined) await kernel.restore(payload);
      state = undefined;
      return {
        summary: { chainsRewritten: rewritten.length, chainsRemoved: removed.length, jumpRepaired },
      };
    },
  };
}

/** The chain's lines, trimmed, in the form `nft list` prints them. */
function chainLines(text: string): string[] {
  const start = text.indexOf('chain postrouting {');
  if (start < 0) return [];
  const end = text.indexOf('}', start);
  return text
    .slice(start, end)
    .split('\n')
    .slice(1)
    .map((line) =>
      line.trim().replace(/snat ip to ip saddr map @others/, 'snat to ip saddr map @others'),
    )
    .filter((line) => line !== '');
}

function sameAssignments(a: readonly ReadAssignment[], b: readonly ReadAssignment[]): boolean {
  return (
    a.length === b.length &&
    a.every((x, i) => {
      const y = b[i];
      return (
        x.client === y?.client &&
        x.publicAddress === y.publicAddress &&
        x.firstPort === y.firstPort &&
        x.lastPort === y.lastPort
      );
    })
  );
}

function nftDriver(runner: CommandRunner, config: Config): BackendDriver {
  const kernel = new NftKernel(runner, config.firewall.nftTable);
  const options = { outInterface: config.nat.outInterface, table: config.firewall.nftTable };
  let listing: string | undefined;
  const chainRight = (plan: RulesetPlan, text: string): boolean =>
    JSON.stringify(chainLines(text)) === JSON.stringify(chainLines(plan.fileText));
  return {
    async read(plan) {
      listing = await kernel.listTable();
      const held = listing === undefined ? [] : readAssignments(listing).assignments;
      const right =
        listing !== undefined &&
        chainRight(plan, listing) &&
        sameAssignments(held, readAssignments(plan.fileText).assignments);
      return { right, assignments: () => held };
    },
    async apply(plan, force) {
      listing ??= await kernel.listTable();
      const whole = force || listing === undefined || !chainRight(plan, listing);
      const transaction = whole
        ? plan.fileText
        : renderNftDelta(readAssignments(listing ?? '').assignments, plan.map, options);
      if (transaction !== '') await kernel.load(transaction);
      listing = undefined;
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
