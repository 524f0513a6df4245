/** `traceable-nat apply`: make the kernel, the rules file and the archive hold the planned ruleset. */
import { applyRuleset, planFromDisk, type ApplyResult } from '../apply/apply.js';
import type { Config } from '../config.js';
import { formatIpv4 } from '../net/ipv4.js';
import { processRunner } from '../netfilter/runner.js';
import { systemClock } from '../system/clock.js';
import { missingInterfaceProblem } from '../system/interfaces.js';
import type { Command, CommandContext } from './command.js';
import { discover } from './discovery.js';
import { EXIT } from './io.js';
import { NAT6_NOT_LOADED, planIpv6FromDisk } from './ipv6-plan.js';

export interface ApplyFlags {
  readonly dryRun: boolean;
  readonly force: boolean;
  readonly verbose: boolean;
  readonly json: boolean;
}

function describe(result: ApplyResult, config: Config): string {
  const { map } = result.plan;
  const addresses = map.publicAddresses.map(formatIpv4).join(', ');
  const what = `${map.clientCount} clients on ${addresses}, ${map.blockSize} ports each`;
  switch (result.outcome) {
    case 'applied':
      return (
        `applied: ${what}; ${result.changedClients} clients changed their block` +
        (result.conntrackDeleted > 0 ? ` (${result.conntrackDeleted} connections reset)` : '') +
        `\narchive: ${result.archive?.path ?? '-'} (sha256 ${result.archive?.sha256 ?? '-'})` +
        (result.rulesFileWritten ? `\nrules file: ${config.firewall.rulesFile} written` : '')
      );
    case 'repaired':
      return `repaired: the kernel no longer held the active ruleset (${what}); loaded it again, no new archive`;
    case 'file-updated':
      return `file updated: ${config.firewall.rulesFile} rewritten; the kernel already held the active ruleset (${what})`;
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
    conntrackDeleted: result.conntrackDeleted,
    archive: result.archive ?? null,
    rulesFileWritten: result.rulesFileWritten,
    kernel: result.kernel?.summary ?? null,
    warnings: result.warnings,
    durationMs: result.durationMs,
  };
}

export async function runApply(context: CommandContext, flags: ApplyFlags): Promise<number> {
  const config = context.config();
  if (flags.dryRun) {
    // Exactly what an apply would load, and nothing else: no lock, no kernel call, no write.
    const discovery = discover(config);
    context.io.stdout(planFromDisk(config, discovery).fileText);
    // nat6 (issue 14): the IPv6 text as planned, after a comment line saying what it is.
    const plan6 = planIpv6FromDisk(config, discovery);
    if (plan6)
      context.io.stdout(
        `# IPv6: ${plan6.file} as planned by nat6; apply does not load it yet\n${plan6.fileText}`,
      );
    return EXIT.ok;
  }
  // Never pretend: until apply loads IPv6 rules, say that nat6 is only planned.
  if (config.nat6 !== undefined) context.io.stderr(`traceable-nat: warning: ${NAT6_NOT_LOADED}\n`);
  // An interface may appear later (a VLAN or bond brought up after us): warn, apply anyway.
  const missing = missingInterfaceProblem(config.nat.outInterface);
  if (missing !== undefined)
    context.io.stderr(
      `warning: ${missing}; the rules are loaded all the same and act once it exists\n`,
    );
  const result = await applyRuleset(
    config,
    { runner: processRunner, clock: systemClock, discover },
    { force: flags.force, requester: 'traceable-nat apply' },
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
  summary: 'load the NAT rules if they differ, write the rules file, archive the new ruleset',
  usage: '[--dry-run] [--force] [--verbose] [--json]',
  options: {
    'dry-run': { type: 'boolean', short: 'n' },
    force: { type: 'boolean', short: 'f' },
    verbose: { type: 'boolean', short: 'v' },
    json: { type: 'boolean' },
  },
  run: (context, options) =>
    runApply(context, {
      dryRun: options['dry-run'] === true,
      force: options.force === true,
      verbose: options.verbose === true,
      json: options.json === true,
    }),
};
