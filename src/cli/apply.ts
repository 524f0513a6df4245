/** `traceable-nat apply`: make the kernel, the rules file and the archive hold the planned ruleset. */
import { applyRuleset, planFromDisk, type ApplyResult } from '../apply/apply.js';
import type { Config } from '../config.js';
import { formatIpv4 } from '../net/ipv4.js';
import { formatCidr6, formatIpv6 } from '../net/ipv6.js';
import type { Ruleset6Plan } from '../render/ruleset6.js';
import { processRunner } from '../netfilter/runner.js';
import { systemClock } from '../system/clock.js';
import { missingInterfaceProblem } from '../system/interfaces.js';
import type { Command, CommandContext } from './command.js';
import { discover } from './discovery.js';
import { EXIT } from './io.js';

export interface ApplyFlags {
  readonly dryRun: boolean;
  readonly force: boolean;
  /** Read the whole kernel back (not only the canary) and repair any drift. */
  readonly verify?: boolean;
  readonly verbose: boolean;
  readonly json: boolean;
}

/** The IPv6 side in a few words: `872 IPv6 clients on 2001:db8::1, 64 ports each`. */
function describe6(plan6: Ruleset6Plan): string {
  const { map } = plan6;
  return map.mode === 'prefix'
    ? `${map.clientCount} IPv6 clients in ${formatCidr6(map.publicPrefix)}, one address each`
    : `${map.clientCount} IPv6 clients on ${map.publicAddresses.map(formatIpv6).join(', ')}, ${map.blockSize} ports each`;
}

/** The rules files an apply wrote: rules.v4 (or the nftables file), rules.v6. */
function writtenFiles(config: Config, result: ApplyResult): string[] {
  const { ipv6, ipv6Removal } = result.plan;
  const file6 = ipv6?.iptables ? ipv6.file : ipv6Removal?.file;
  return [
    ...(result.rulesFileWritten ? [config.firewall.rulesFile] : []),
    ...(result.rulesFile6Written && file6 !== undefined ? [file6] : []),
  ];
}

function describe(result: ApplyResult, config: Config): string {
  const { map, ipv6 } = result.plan;
  const addresses = map.publicAddresses.map(formatIpv4).join(', ');
  const what =
    `${map.clientCount} clients on ${addresses}, ${map.blockSize} ports each` +
    (ipv6 ? `; ${describe6(ipv6)}` : '');
  switch (result.outcome) {
    case 'applied':
      return (
        `applied: ${what}; ${result.changedClients} clients changed their block` +
        (ipv6 ? `, ${result.changedClients6} IPv6 clients their translation` : '') +
        (result.conntrackDeleted > 0 ? ` (${result.conntrackDeleted} connections reset)` : '') +
        `\narchive: ${result.archive?.path ?? '-'} (sha256 ${result.archive?.sha256 ?? '-'})` +
        writtenFiles(config, result)
          .map((file) => `\nrules file: ${file} written`)
          .join('')
      );
    case 'repaired':
      return `repaired: the kernel no longer held the active ruleset (${what}); loaded it again, no new archive`;
    case 'file-updated':
      return `file updated: ${writtenFiles(config, result).join(' and ')} rewritten; the kernel already held the active ruleset (${what})`;
    case 'unchanged':
      return `unchanged: the kernel, ${config.firewall.rulesFile} and the newest archive already hold this ruleset (${what})`;
  }
}

function resultJson(result: ApplyResult): Record<string, unknown> {
  return {
    outcome: result.outcome,
    clients: result.plan.map.clientCount,
    publicAddresses: result.plan.map.publicAddresses.map(formatIpv4),
    blockSize: result.plan.map.blockSize,
    changedClients: result.changedClients,
    ...(result.plan.ipv6 && {
      ipv6: {
        mode: result.plan.ipv6.map.mode,
        clients: result.plan.ipv6.map.clientCount,
        changedClients: result.changedClients6,
        rulesFile: result.plan.ipv6.file,
        rulesFileWritten: result.rulesFile6Written,
      },
    }),
    conntrackDeleted: result.conntrackDeleted,
    archive: result.archive ?? null,
    rulesFileWritten: result.rulesFileWritten,
    kernel: result.kernel?.summary ?? null,
    kernelRead: result.kernelRead,
    warnings: result.warnings,
    durationMs: result.durationMs,
    timings: result.timings,
    planCache: result.planCache,
  };
}

export async function runApply(context: CommandContext, flags: ApplyFlags): Promise<number> {
  const config = context.config();
  if (flags.dryRun) {
    // Exactly what an apply would load, and nothing else: no lock, no kernel call, no write.
    // nftables: one file holds both families; iptables: rules.v6 follows after a comment line.
    const plan = planFromDisk(config, discover(config));
    context.io.stdout(plan.fileText);
    if (plan.ipv6 && plan.backend === 'iptables')
      context.io.stdout(`# IPv6: ${plan.ipv6.file} as planned by nat6\n${plan.ipv6.fileText}`);
    return EXIT.ok;
  }
  // An interface may appear later (a VLAN or bond brought up after us): warn, apply anyway.
  const missing = missingInterfaceProblem(config.nat.outInterface);
  if (missing !== undefined)
    context.io.stderr(
      `warning: ${missing}; the rules are loaded all the same and act once it exists\n`,
    );
  const result = await applyRuleset(
    config,
    { runner: processRunner, clock: systemClock, discover },
    {
      force: flags.force,
      requester: 'traceable-nat apply',
      kernelCheck: flags.verify === true ? 'full' : undefined,
    },
  );
  // The ruleset stands (exit 0); what failed after it became active is said on stderr.
  for (const warning of result.warnings) context.io.stderr(`traceable-nat: warning: ${warning}\n`);
  if (flags.json) context.io.stdout(JSON.stringify(resultJson(result), null, 2) + '\n');
  else if (result.outcome !== 'unchanged' || flags.verbose)
    context.io.stdout(describe(result, config) + '\n');
  return EXIT.ok;
}

export const applyCommand: Command = {
  name: 'apply',
  options: {
    'dry-run': { type: 'boolean', short: 'n' },
    force: { type: 'boolean', short: 'f' },
    verify: { type: 'boolean' },
    verbose: { type: 'boolean', short: 'v' },
    json: { type: 'boolean' },
  },
  run: (context, options) =>
    runApply(context, {
      dryRun: options['dry-run'] === true,
      force: options.force === true,
      verify: options.verify === true,
      verbose: options.verbose === true,
      json: options.json === true,
    }),
};
