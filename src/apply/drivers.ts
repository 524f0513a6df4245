/**
 * One driver per backend: what the kernel holds of our ruleset now, and the smallest atomic
 * change that makes it hold the plan (iptables: only the chains that differ; nftables: element
 * deletes and adds, or the whole table when it is missing or its chain is not ours as planned).
 */
import type { Config } from '../config.js';
import { IptablesKernel } from '../netfilter/iptables.js';
import {
  buildIptablesPayload,
  buildRemovalPayload,
  readCanary,
  readJumps,
  readKernelNat,
  type KernelNat,
} from '../netfilter/iptables-payload.js';
import { NftKernel } from '../netfilter/nftables.js';
import type { NftTableView } from '../netfilter/nft-json.js';
import type { CommandRunner } from '../netfilter/runner.js';
import { nftChainText, renderNftCanary, renderNftDelta } from '../render/nftables.js';
import { fingerprint6, translations6 as readTranslations6 } from '../render/fingerprint6.js';
import { CANARY_CHAIN, type IptablesNat } from '../render/iptables.js';
import { isTnatError, PartialLoadError } from '../errors.js';
import { readAssignments } from '../render/read-rules.js';
import { assignmentColumns } from '../mapping/columns.js';
import { bindingsOf, NO_BINDINGS, sameBindings, type Bindings } from '../mapping/bindings.js';
import { diffChains, type ChainDiff, type ExtractedNat } from '../render/rules-file.js';
import type { RulesetPlan } from './plan.js';

export interface KernelView {
  /** The kernel holds exactly the planned IPv4 ruleset. */
  readonly right: boolean;
  /** The kernel holds the planned IPv6 ruleset (always true without nat6). */
  readonly right6: boolean;
  /**
   * The client bindings the kernel holds now, one per client (for the removal guard and
   * conntrack after a switch); read on demand.
   */
  bindings(): Bindings;
  /** The kernel's IPv6 translations, source -> target (src/render/fingerprint6.ts). */
  translations6(): ReadonlyMap<string, string>;
  /**
   * The archive digest the kernel's canary names (undefined: none), when the kernel was looked
   * at; absent when it was trusted or the backend keeps no canary.
   */
  readonly canary?: { readonly sha256: string | undefined } | undefined;
  /** How the kernel was known: read whole, through its canary, or trusted from the last apply. */
  readonly how: 'full' | 'canary' | 'trusted';
}

/**
 * What the kernel holds if its canary names `sha256`: the ruleset of that archive (the rules
 * file as it was archived). Read from the text only when the canary agrees.
 */
export interface KernelClaim {
  readonly sha256: string;
  /** That archive's ruleset (the rules file's text). */
  readonly text: string;
  /** Our chains and jump in that ruleset (iptables). */
  readonly nat: ExtractedNat | undefined;
  /** Its bindings, one per client. */
  readonly bindings: Bindings;
}

export interface KernelChange {
  /** What was loaded, for the log: chains rewritten or elements changed. */
  readonly summary: Readonly<Record<string, number | boolean>>;
}

/** The plan this process applied last, taken as what the kernel holds (see BackendDriver.read). */
export interface TrustedKernel {
  readonly plan: RulesetPlan;
  /**
   * The archive digest that apply will have set as the canary (the newest archive's): most
   * likely still there, but the kernel is not read to know.
   */
  readonly canary: string | undefined;
}

export interface BackendDriver {
  /**
   * What the kernel holds. With `trusted`, the plan that this process applied last is taken as
   * the kernel's state without reading it back (the daemon's change path; its periodic check
   * reads the kernel and repairs any drift).
   */
  read(plan: RulesetPlan, trusted?: TrustedKernel, claim?: KernelClaim): Promise<KernelView>;
  /**
   * Brings the kernel to the plan, both families, as one change: the kernel takes all of it or
   * none of it. `force` rewrites all of our part. `onSpawn` is told the pid of each process
   * that changes the kernel.
   */
  apply(
    plan: RulesetPlan,
    force: boolean,
    onSpawn?: (pid: number) => void,
    canary?: string,
  ): Promise<KernelChange>;
}

const NO_TRANSLATIONS: ReadonlyMap<string, string> = new Map();

/** Our chains as known and as planned, and how they differ (compared once per apply). */
interface ComparedChains {
  readonly held: KernelNat['chains'];
  readonly desired: IptablesNat['chains'];
  readonly diff: ChainDiff;
}

/** What a restore must change for a kernel state to hold `desired` (`force`: all of it). */
function payloadFor(
  state: KernelNat,
  desired: IptablesNat,
  force: boolean,
  canary?: string,
  compared?: ComparedChains,
) {
  if (!force && compared?.held === state.chains && compared.desired === desired.chains)
    return buildIptablesPayload(state, desired, canary, compared.diff);
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
  return buildIptablesPayload(base, desired, canary);
}

/** The IPv6 change: to the desired chains, or (nat6 removed) to none of ours at all. */
function payload6For(state6: KernelNat, desired6: IptablesNat | undefined, force: boolean) {
  if (desired6) return payloadFor(state6, desired6, force);
  return {
    payload: buildRemovalPayload(state6),
    rewritten: [],
    removed: [...state6.chains.keys()],
    jumpRepaired: false,
  };
}

function trustedNat(nat: IptablesNat): KernelNat {
  return { chains: nat.chains, jumps: [nat.jump], jumpFirst: true };
}

function iptablesDriver(runner: CommandRunner, config: Config): BackendDriver {
  const kernel = new IptablesKernel(runner, config.firewall.iptables);
  const kernel6 = new IptablesKernel(runner, config.firewall.iptables, 6);
  let state: KernelNat | undefined;
  let state6: KernelNat | undefined;
  /** `state` came from the canary and the archive, not from reading the table. */
  let claimed = false;
  /** What read() found of `state` against the plan: apply() builds its payload on it. */
  let compared: ComparedChains | undefined;
  return {
    async read(plan, known, claim) {
      const trusted = known?.plan;
      claimed = false;
      compared = undefined;
      let right6 = true;
      let translations6 = (): ReadonlyMap<string, string> => NO_TRANSLATIONS;
      const desired6 = plan.ipv6?.iptables;
      const kernelHoldsPlan = (held: KernelNat): boolean => {
        const desired = plan.iptables;
        if (desired === undefined) return false;
        const diff = diffChains(held.chains, desired.chains);
        compared = { held: held.chains, desired: desired.chains, diff };
        return buildIptablesPayload(held, desired, undefined, diff).payload === undefined;
      };
      if (desired6) {
        const trusted6 = trusted?.ipv6;
        const save6 = trusted6?.iptables ? undefined : await kernel6.saveNat();
        state6 = trusted6?.iptables ? trustedNat(trusted6.iptables) : readKernelNat(save6 ?? '');
        right6 = buildIptablesPayload(state6, desired6).payload === undefined;
        let held6: ReadonlyMap<string, string> | undefined;
        translations6 = () => (held6 ??= readTranslations6(save6 ?? trusted6?.fileText ?? ''));
      } else if (plan.ipv6Removal) {
        // nat6 was removed: whatever of ours the kernel still holds must go.
        const save6 = await kernel6.saveNat();
        state6 = readKernelNat(save6);
        right6 = buildRemovalPayload(state6) === undefined;
        translations6 = () => readTranslations6(save6);
      }
      if (trusted?.iptables) {
        state = trustedNat(trusted.iptables);
        const right = kernelHoldsPlan(state);
        return {
          right,
          right6,
          bindings: () => assignmentColumns(trusted.map),
          translations6,
          how: 'trusted',
        };
      }
      const fromCanary = claim && (await readClaimed(kernel, claim));
      if (claim && fromCanary) {
        state = fromCanary;
        claimed = true;
        const right = kernelHoldsPlan(state);
        return {
          right,
          right6,
          bindings: () => claim.bindings,
          translations6,
          canary: { sha256: fromCanary.canary },
          how: 'canary',
        };
      }
      const save = await kernel.saveNat();
      state = readKernelNat(save);
      const right = kernelHoldsPlan(state);
      // Read once on demand: the removal guard and the conntrack step both ask.
      let held: Bindings | undefined;
      return {
        right,
        right6,
        bindings: () => (held ??= bindingsOf(readAssignments(save).assignments)),
        translations6,
        canary: { sha256: state.canary },
        how: 'full',
      };
    },
    async apply(plan, force, onSpawn, canary) {
      const desired = plan.iptables;
      if (!desired) throw new Error('iptables driver used with a plan for another backend');
      state ??= readKernelNat(await kernel.saveNat());
      const desired6 = plan.ipv6?.iptables;
      if (desired6 || plan.ipv6Removal) state6 ??= readKernelNat(await kernel6.saveNat());
      let before = state;
      let four = payloadFor(before, desired, force, canary, compared);
      const six = state6 && payload6For(state6, desired6, force);
      /**
       * Runs `step` on the IPv4 payload. One built on the canary's word that the kernel
       * refuses (one of our chains deleted by hand, say) changed nothing: the table is read
       * whole, the payload built again, and `step` run once more.
       */
      const onFour = async (step: (payload: string) => Promise<void>) => {
        if (four.payload === undefined) return;
        try {
          await step(four.payload);
        } catch (error) {
          if (!claimed) throw error;
          claimed = false;
          before = readKernelNat(await kernel.saveNat());
          four = payloadFor(before, desired, force, canary);
          if (four.payload !== undefined) await step(four.payload);
        }
      };
      // One restore is one transaction: all of it or none of it, so it needs no test run. Two
      // families are two tools and two transactions: both are tested before either is loaded,
      // and IPv4 is put back if IPv6 is refused all the same, so the kernel takes both or none.
      if (four.payload !== undefined && six?.payload !== undefined) {
        await onFour((payload) => kernel.test(payload));
        await kernel6.test(six.payload);
      }
      await onFour((payload) => kernel.load(payload, onSpawn));
      if (six?.payload !== undefined) {
        try {
          await kernel6.load(six.payload, onSpawn);
        } catch (error) {
          if (four.payload !== undefined) await restoreIpv4(kernel, before, desired, error);
          throw error;
        }
      }
      state = undefined;
      state6 = undefined;
      compared = undefined;
      return {
        summary: {
          chainsRewritten: four.rewritten.length,
          chainsRemoved: four.removed.length,
          jumpRepaired: four.jumpRepaired,
          ...(six && {
            chainsRewritten6: six.rewritten.length,
            chainsRemoved6: six.removed.length,
            jumpRepaired6: six.jumpRepaired,
          }),
        },
      };
    },
  };
}

/**
 * The kernel as the claim says, when its canary names the claimed archive: our chains from that
 * archive's text, POSTROUTING's jumps as the kernel holds them (two small reads). Undefined
 * when the canary is missing or names another archive: then the whole table is read.
 */
async function readClaimed(
  kernel: IptablesKernel,
  claim: KernelClaim,
): Promise<KernelNat | undefined> {
  if (claim.nat === undefined) return undefined;
  // Both at once (each an iptables process, some 10 ms): POSTROUTING is wasted only when the
  // canary sends the caller to read the whole table, which takes seconds anyway.
  const [listed, postrouting] = await Promise.all([
    kernel.listChain(CANARY_CHAIN),
    kernel.listChain('POSTROUTING'),
  ]);
  const canary = listed === undefined ? undefined : readCanary(listed);
  if (canary !== claim.sha256) return undefined;
  if (postrouting === undefined) return undefined;
  return {
    chains: claim.nat.chains,
    ...readJumps(postrouting.split('\n')),
    canary,
    canaryChain: true,
  };
}

/** After IPv6 was refused: the IPv4 chains as they were before this apply loaded its own. */
async function restoreIpv4(
  kernel: IptablesKernel,
  before: KernelNat,
  loaded: IptablesNat,
  cause: unknown,
): Promise<void> {
  const back =
    before.chains.size === 0
      ? buildRemovalPayload(trustedNat(loaded))
      : buildIptablesPayload(
          trustedNat(loaded),
          { chains: before.chains, jump: before.jumps[0] ?? loaded.jump },
          before.canary,
        ).payload;
  if (back === undefined) return;
  try {
    await kernel.load(back);
  } catch (error) {
    throw new PartialLoadError(
      'E_COMMAND',
      `ip6tables-restore refused the IPv6 rules (${isTnatError(cause) ? cause.message : String(cause)}) after the IPv4 rules were loaded, and putting the previous IPv4 rules back failed too (${isTnatError(error) ? error.message : String(error)}): the IPv4 rules are the new ones, the IPv6 rules the old ones; run traceable-nat apply again once the cause is fixed`,
      { cause },
    );
  }
}

/** `srcnat - 10`: nft(8) gives srcnat the number 100; ours must come before eduVPN's masquerade. */
const NFT_PRIORITY = 90;

/** Our chain as renderNftTable writes it: hooked before srcnat, the two snat-to-map rules. */
export function nftChainRight(
  table: Pick<NftTableView, 'chain' | 'rules'>,
  outInterface: string,
): boolean {
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

/** Our table as known: its chain and canaries as listed, its `clients` map as bindings. */
interface NftTableState extends Omit<NftTableView, 'clients'> {
  readonly held: Bindings;
}

function stateOf(view: NftTableView | undefined): NftTableState | undefined {
  return view && { ...view, held: bindingsOf(view.clients) };
}

function nftDriver(runner: CommandRunner, config: Config): BackendDriver {
  const kernel = new NftKernel(runner, config.firewall.nftTable);
  const options = { outInterface: config.nat.outInterface, table: config.firewall.nftTable };
  /** Our table as last read (whole, or through its canary); undefined: not there. */
  let table: NftTableState | undefined;
  let read = false;
  /** `table` came from the canary and the archive, not from the kernel's elements. */
  let claimed = false;
  /** Canaries that may or may not be in the kernel (trusted: it was not read). */
  let unsureCanaries: readonly string[] = [];
  let right6 = true;
  const load = async () => {
    if (!read) {
      table = stateOf(await kernel.readTable());
      claimed = false;
      unsureCanaries = [];
    }
    read = true;
    return table;
  };
  /** Our table ip6 as planned, or none without nat6 (then any left from before goes). */
  const readSide6 = async (plan: RulesetPlan, trusted: RulesetPlan | undefined) => {
    const listed = trusted ? trusted.ipv6?.fileText : await kernel.listTable6();
    const planned = plan.ipv6?.fileText;
    right6 =
      planned === undefined
        ? listed === undefined
        : listed !== undefined && fingerprint6(listed) === fingerprint6(planned);
    let held6: ReadonlyMap<string, string> | undefined;
    return () => (held6 ??= readTranslations6(listed ?? ''));
  };
  const rightFor = (current: NftTableState | undefined, plan: RulesetPlan): boolean =>
    current !== undefined &&
    nftChainRight(current, options.outInterface) &&
    current.othersMatch &&
    sameBindings(current.held, assignmentColumns(plan.map));
  /** One transaction from what is known of the table to the plan, canary included. */
  const change = async (
    plan: RulesetPlan,
    force: boolean,
    onSpawn: ((pid: number) => void) | undefined,
    canary: string | undefined,
  ): Promise<KernelChange> => {
    const current = await load();
    // A delta of the clients map carries the others map along: when the two disagree (an
    // element deleted from one by hand), only a whole table puts both right.
    const whole =
      force ||
      current === undefined ||
      !current.othersMatch ||
      (current.chain !== undefined && !nftChainRight(current, options.outInterface));
    // The whole file holds both tables; otherwise the IPv4 delta, and the table ip6 (which
    // replaces itself whole) when it is not as planned: one transaction either way.
    const six = right6 ? '' : (plan.ipv6?.fileText ?? removeTable6(options.table));
    const marked = (held: readonly string[]) =>
      canary === undefined ? '' : renderNftCanary(options.table, held, canary, unsureCanaries);
    const transaction = whole
      ? plan.fileText + (plan.ipv6 ? '' : six) + marked([])
      : renderNftDelta(current.held, plan.map, options) + six + marked(current.canaries);
    if (transaction !== '') await kernel.load(transaction, onSpawn);
    read = false;
    return {
      summary: {
        wholeTable: whole,
        transactionLines: transaction.split('\n').length - 1,
        ...(plan.ipv6 && { table6Replaced: whole || !right6 }),
      },
    };
  };
  return {
    async read(plan, known, claim) {
      const trusted = known?.plan;
      read = false;
      claimed = false;
      unsureCanaries = [];
      if (trusted) {
        const translations6 = await readSide6(plan, trusted);
        const held = assignmentColumns(trusted.map);
        table = { chain: undefined, rules: [], held, othersMatch: true, canaries: [] };
        // The canary this process set last is most likely there: it goes whether it is or not.
        unsureCanaries = known.canary === undefined ? [] : [known.canary];
        read = true;
        // Our chain as planned: only the elements can differ.
        return {
          right: sameBindings(held, assignmentColumns(plan.map)),
          right6,
          bindings: () => held,
          translations6,
          how: 'trusted',
        };
      }
      // Both at once (each an nft process, 10-30 ms).
      const [translations6, fromCanary] = await Promise.all([
        readSide6(plan, undefined),
        claim && readClaimedTable(kernel, claim, plan, options),
      ]);
      if (claim && fromCanary) {
        table = fromCanary;
        read = true;
        claimed = true;
        return {
          right: rightFor(fromCanary, plan),
          right6,
          bindings: () => fromCanary.held,
          translations6,
          canary: { sha256: claim.sha256 },
          how: 'canary',
        };
      }
      const current = await load();
      return {
        right: rightFor(current, plan),
        right6,
        bindings: () => current?.held ?? NO_BINDINGS,
        translations6,
        canary: { sha256: current?.canaries.length === 1 ? current.canaries[0] : undefined },
        how: 'full',
      };
    },
    async apply(plan, force, onSpawn, canary) {
      try {
        return await change(plan, force, onSpawn, canary);
      } catch (error) {
        // nft refused a change built on the canary's word (an element deleted by hand, say):
        // nothing was loaded, so read the table whole and build it again, once.
        if (!claimed) throw error;
        read = false;
        return await change(plan, force, onSpawn, canary);
      }
    },
  };
}

/**
 * Our table as the claim says, when its one canary names the claimed archive: the maps from
 * that archive's text, the chain's hook as the kernel lists it. Undefined (read the table
 * whole) when the canary is missing or names another archive, or when the archived chain is
 * not the planned one (another `nat.outInterface`: the table is replaced whole then anyway).
 */
async function readClaimedTable(
  kernel: NftKernel,
  claim: KernelClaim,
  plan: RulesetPlan,
  { table, outInterface }: { readonly table: string; readonly outInterface: string },
): Promise<NftTableState | undefined> {
  const listed = await kernel.readChains();
  if (listed.canaries.length !== 1 || listed.canaries[0] !== claim.sha256) return undefined;
  const chainText = nftChainText(claim.text, table);
  if (chainText === undefined || chainText !== nftChainText(plan.fileText, table)) return undefined;
  // The rules are the archived chain's, which is the planned chain's text.
  return {
    chain: listed.chain,
    rules: [
      { outInterface, l4protoOp: '==', snatMap: '@clients' },
      { outInterface, l4protoOp: '!=', snatMap: '@others' },
    ],
    held: claim.bindings,
    othersMatch: true,
    canaries: listed.canaries,
  };
}

/** Our table ip6 gone (nat6 was removed): declared first, so the delete never fails. */
function removeTable6(table: string): string {
  return `table ip6 ${table}\ndelete table ip6 ${table}\n`;
}

export function driverFor(config: Config, runner: CommandRunner): BackendDriver {
  return config.firewall.backend === 'nftables'
    ? nftDriver(runner, config)
    : iptablesDriver(runner, config);
}
