/** `traceable-nat status`: what is active now, and whether rules file, archive and kernel agree. */
import { readActiveStatus, type RulesetSummary, type Summary6 } from '../apply/status.js';
import { formatIpv4 } from '../net/ipv4.js';
import { bootProblem } from '../system/boot-problem.js';
import { processRunner } from '../netfilter/runner.js';
import type { Command } from './command.js';
import { EXIT } from './io.js';

/** One status line: where a ruleset was read, what it holds, and whether it is the archive's. */
function summaryLine(
  label: string,
  source: string | undefined,
  what: string,
  sameAsArchive: boolean | undefined,
): string {
  if (source === undefined) return `${label.padEnd(10)} none`;
  const same =
    sameAsArchive === undefined
      ? ''
      : sameAsArchive
        ? ' (same as the archive)'
        : ' (DIFFERS from the archive)';
  return `${label.padEnd(10)} ${source}: ${what}${same}`;
}

function line(label: string, summary: RulesetSummary, reference: RulesetSummary): string {
  const what = `${summary.clients} clients, ${summary.blockSize} ports each, on ${summary.publicAddresses.map(formatIpv4).join(', ') || '-'}`;
  const same = summary === reference ? undefined : summary.bindings === reference.bindings;
  return summaryLine(label, summary.source, what, same);
}

function line6(label: string, summary: Summary6, reference: Summary6): string {
  const ranges = summary.targets.some((to) => to.includes('/'));
  const what = `${summary.sources} ${ranges ? 'client ranges' : 'clients'} to ${summary.targets.join(', ') || '-'}`;
  const same = summary === reference ? undefined : summary.fingerprint === reference.fingerprint;
  return summaryLine(label, summary.source, what, same);
}

function json6(summary: Summary6): Record<string, unknown> {
  return { source: summary.source ?? null, sources: summary.sources, targets: summary.targets };
}

function json(summary: RulesetSummary): Record<string, unknown> {
  return {
    source: summary.source ?? null,
    clients: summary.clients,
    blockSize: summary.blockSize,
    publicAddresses: summary.publicAddresses.map(formatIpv4),
  };
}

export const statusCommand: Command = {
  name: 'status',
  options: { json: { type: 'boolean' } },
  async run(context, options) {
    const config = context.config();
    const status = await readActiveStatus(config, processRunner);
    // Whether a reboot keeps what is active: said beside it, the exit status stays agreement's.
    const boot = bootProblem(config.firewall);
    const since =
      status.archive.activatedAt === undefined
        ? ''
        : ` since ${new Date(status.archive.activatedAt * 1000).toISOString()}`;
    if (options.json) {
      context.io.stdout(
        JSON.stringify(
          {
            agree: status.agree,
            kernelTree: status.kernelTree ?? null,
            rulesFileTree: status.rulesFileTree ?? null,
            activeSince: status.archive.activatedAt ?? null,
            archive: json(status.archive),
            rulesFile: json(status.rulesFile),
            kernel: json(status.kernel),
            boot: boot ? { loadsNoFirewall: boot.fails, problem: boot.text } : null,
            ...(status.ipv6 && {
              ipv6: {
                agree: status.ipv6.agree,
                archive: json6(status.ipv6.archive),
                rulesFile: json6(status.ipv6.rulesFile),
                kernel: json6(status.ipv6.kernel),
              },
            }),
          },
          null,
          2,
        ) + '\n',
      );
    } else {
      context.io.stdout(
        [
          line('archive', status.archive, status.archive) + since,
          line('rules file', status.rulesFile, status.archive),
          line('kernel', status.kernel, status.archive),
          ...(status.ipv6
            ? [
                line6('IPv6 archive', status.ipv6.archive, status.ipv6.archive),
                line6('IPv6 rules file', status.ipv6.rulesFile, status.ipv6.archive),
                line6('IPv6 kernel', status.ipv6.kernel, status.ipv6.archive),
              ]
            : []),
          ...(status.kernelTree === false
            ? [
                config.firewall.backend === 'nftables'
                  ? `kernel: our table ${config.firewall.nftTable}'s chain or maps differ from the newest archive (edited by hand, or another outgoing interface?)`
                  : 'kernel: our chains or POSTROUTING jump differ from the newest archive (edited, or flushed and partly restored?)',
              ]
            : []),
          ...(status.rulesFileTree === false
            ? [
                `rules file: ${config.firewall.rulesFile} does not hold our rules as the newest archive has them (edited by hand?), and a boot loads it: run traceable-nat apply, which writes it`,
              ]
            : []),
          ...(boot ? [`boot: ${boot.text}`] : []),
          status.agree
            ? `agree: yes, the kernel holds the newest archived ruleset${status.ipv6 ? ' (IPv4 and IPv6)' : ''}`
            : 'agree: NO; run traceable-nat apply --verify, which reads the kernel whole and puts it right (or check the daemon: journalctl -u traceable-nat)',
        ].join('\n') + '\n',
      );
    }
    return status.agree ? EXIT.ok : EXIT.notOk;
  },
};
