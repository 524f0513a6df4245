/**
 * `traceable-nat check`: runs every check it can and reports each one, so an operator sees all
 * that is wrong in one go. Exit 0 only when all pass; 2 when any input is bad.
 */
import { resolve } from 'node:path';
import { planFromDisk } from '../apply/apply.js';
import { ipv6HalfDigest, listArchives, readArchive } from '../archive/store.js';
import { archiveHeadProblems, futureDatedProblems } from '../archive/head-check.js';
import { auditProblems, readAuditedArchives } from '../archive/journal-audit.js';
import { verifyArchiveChain } from '../archive/verify.js';
import type { Config } from '../config.js';
import { CommandError, isTnatError, TnatError } from '../errors.js';
import { clientCount } from '../eduvpn/pool.js';
import { formatIpv4 } from '../net/ipv4.js';
import { missingInterfaceProblem } from '../system/interfaces.js';
import { nftBootProblem } from '../system/nft-boot.js';
import { readRulesFile } from '../apply/snapshot.js';
import { danglingJumpSentence } from '../system/iptables-boot.js';
import { IptablesKernel } from '../netfilter/iptables.js';
import { processRunner, type CommandRunner } from '../netfilter/runner.js';
import type { Command, CommandContext } from './command.js';
import { discover } from './discovery.js';
import { EXIT } from './io.js';
import { hasIpv6Clients, IPV6_UNTRACEABLE, planIpv6FromDisk } from './ipv6-plan.js';

interface CheckStep {
  readonly name: string;
  /** Returns a short summary on success; throws a TnatError on a problem. */
  readonly run: (config: Config) => string | Promise<string>;
}

const checkSteps: CheckStep[] = [
  {
    name: 'eduVPN configuration',
    run: (config) => {
      const discovery = discover(config);
      const clients = discovery.pools.reduce((sum, pool) => sum + clientCount(pool), 0);
      return `${clients} clients in ${discovery.pools.length} pools from ${discovery.source} (${discovery.files.join(', ')})`;
    },
  },
  {
    // Rules for an interface that does not exist load, but translate nothing (issue 11).
    name: 'outgoing interface',
    run: (config) => {
      const problem = missingInterfaceProblem(config.nat.outInterface);
      if (problem !== undefined) throw new TnatError('E_CONFIG', problem);
      return `${config.nat.outInterface} exists in this network namespace`;
    },
  },
  {
    // The whole plan, without the kernel: the clients fit, and the rules file can be merged.
    name: 'port blocks and rules file',
    run: (config) => {
      const { map } = planFromDisk(config, discover(config));
      return (
        `${map.clientCount} clients get ${map.blockSize} ports each on ` +
        `${map.publicAddresses.map(formatIpv4).join(', ')} (room for ${map.blocks.length * map.publicAddresses.length}); ` +
        `${config.firewall.rulesFile} can be merged`
      );
    },
  },
  {
    // What a boot loads (netfilter-persistent, or nftables.service including our file): a rules
    // file the kernel refuses leaves the machine without our rules, or without any at all.
    name: 'rules file at boot',
    run: (config) => bootLoadSummary(config, processRunner),
  },
  {
    // IPv6 (issue 14): the plan must hold; without nat6 a warning is added in runChecks.
    name: 'IPv6 (nat6)',
    run: (config) => {
      const plan = planIpv6FromDisk(config, discover(config));
      if (!plan) return 'not set: IPv6 is left to the firewall';
      const { map } = plan;
      const where =
        map.mode === 'prefix'
          ? `one address each in ${config.nat6?.mode === 'prefix' ? config.nat6.publicPrefix : ''}`
          : `${map.blockSize} ports each on ${map.publicAddresses.length} public address${map.publicAddresses.length === 1 ? '' : 'es'}`;
      return `${map.clientCount} IPv6 clients get ${where}; ${plan.file} can be merged`;
    },
  },
  {
    name: 'archive hash chain',
    run: (config) => {
      const dirs = [...new Set([config.firewall.archiveDir, ...config.trace.archiveDirs])];
      const problems: string[] = [];
      let archives = 0;
      for (const dir of dirs) {
        const files = listArchives(dir).map((entry) => {
          const { text, sha256 } = readArchive(dir, entry);
          const ipv6Sha256 = entry.backend === 'iptables' ? ipv6HalfDigest(dir, entry) : undefined;
          return { name: entry.name, text, sha256, ipv6Sha256 };
        });
        const report = verifyArchiveChain(files);
        archives += report.archives;
        problems.push(...report.problems.map((problem) => `${dir}: ${problem.message}`));
      }
      if (problems.length > 0) {
        throw new TnatError(
          'E_ARCHIVE',
          `the archive hash chain is broken (${problems.length} problem${problems.length === 1 ? '' : 's'}): ${problems.join('; ')}`,
        );
      }
      return `${archives} archives in ${dirs.join(', ')}, every link intact`;
    },
  },
  {
    // What the chain inside the directory cannot see: its newest link, dates, interruptions.
    name: 'archive head',
    run: (config) => {
      const { archiveDir, stateFile } = config.firewall;
      const audited = readAuditedArchives();
      const problems = [
        ...archiveHeadProblems(archiveDir, stateFile, Date.now()),
        ...auditProblems(archiveDir, audited ?? []),
      ].map((problem) => `${archiveDir}: ${problem}`);
      // The directories trace reads beside it (other nodes' archives) have no anchor here.
      for (const dir of new Set(config.trace.archiveDirs)) {
        if (resolve(dir) === resolve(archiveDir)) continue;
        problems.push(
          ...futureDatedProblems(dir, Date.now()).map((problem) => `${dir}: ${problem}`),
        );
      }
      if (problems.length > 0) throw new TnatError('E_ARCHIVE', problems.join('; '));
      const newest = listArchives(archiveDir).at(-1);
      const journal =
        audited === undefined || audited.length === 0
          ? 'no audit event in the journal to compare'
          : `the ${audited.length} audit events in the journal agree`;
      return newest === undefined
        ? `no archive in ${archiveDir} yet (${journal})`
        : `${newest.name} is the newest archive, as ${stateFile} anchors it (${journal})`;
    },
  },
];

async function runChecks(context: CommandContext): Promise<number> {
  const { io } = context;
  let config: Config;
  try {
    config = context.config();
    io.stdout(`ok    configuration: ${context.configFile}\n`);
  } catch (error) {
    if (!isTnatError(error)) throw error;
    io.stdout(`FAIL  configuration: ${error.message}\n`);
    return EXIT.badInput;
  }
  let status: number = EXIT.ok;
  for (const step of checkSteps) {
    try {
      io.stdout(`ok    ${step.name}: ${await step.run(config)}\n`);
    } catch (error) {
      if (!isTnatError(error)) throw error;
      io.stdout(`FAIL  ${step.name}: ${error.message}\n`);
      status = EXIT.badInput;
    }
  }
  // Exit 0 all the same: IPv6 without nat6 works, it is only not traceable (issue 14).
  if (config.nat6 === undefined && ipv6Untraceable(config))
    io.stdout(`warn  IPv6: ${IPV6_UNTRACEABLE}\n`);
  // The daemon loads the table at its start and after its periodic check: a warning, unless a
  // boot would load no firewall at all.
  const boot =
    config.firewall.backend === 'nftables' ? nftBootProblem(config.firewall.rulesFile) : undefined;
  if (boot !== undefined) {
    io.stdout(`${boot.fails ? 'FAIL ' : 'warn '} rules file at boot: ${boot.text}\n`);
    if (boot.fails) status = EXIT.badInput;
  }
  return status;
}

/**
 * Whether the kernel would take each rules file a boot loads, as it is on disk: `iptables-restore
 * --test` (rules.v4, and rules.v6 when there is one) or `nft -c -f`, which change nothing.
 */
async function bootLoadSummary(config: Config, runner: CommandRunner): Promise<string> {
  const { firewall } = config;
  if (process.getuid?.() !== 0) return 'not checked: only root can ask the kernel';
  const iptables = firewall.backend === 'iptables';
  const files = iptables
    ? [
        { file: firewall.rulesFile, family: 4 as const },
        { file: firewall.rulesFile6, family: 6 as const },
      ]
    : [{ file: firewall.rulesFile, family: undefined }];
  const told: string[] = [];
  for (const { file, family } of files) {
    const text = readRulesFile(file);
    if (text === undefined) {
      // rules.v6 exists only with nat6 or the operator's own IPv6 rules.
      if (family !== 6) told.push(`${file}: none yet, a boot loads nothing of ours`);
      continue;
    }
    const tool = iptables
      ? `${family === 6 ? 'ip6tables' : 'iptables'}-restore --test`
      : 'nft -c -f';
    try {
      if (family === undefined) await runner.run('nft', ['-c', '-f', file]);
      else await new IptablesKernel(runner, firewall.iptables, family).test(text);
    } catch (error) {
      if (!isTnatError(error)) throw error;
      const said = error instanceof CommandError && error.exitCode !== null ? saidBy(error) : '';
      throw new TnatError(
        'E_RULES_FILE',
        `${file} would not load at boot (${tool}: ${said || error.message}): correct it (the newest archive in ${firewall.archiveDir} holds the rules last applied), then run traceable-nat apply`,
        { cause: error },
      );
    }
    if (family !== undefined) {
      const jump = danglingJumpSentence(text, file, family);
      if (jump !== undefined) throw new TnatError('E_RULES_FILE', jump);
    }
    told.push(`${file} loads (${tool})`);
  }
  return told.join('; ');
}

/** What iptables-restore or nft wrote of its refusal, on one line, without the usage hint. */
function saidBy(error: CommandError): string {
  return error.stderr
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('Try `') && !/^\^+$/.test(line))
    .join('; ');
}

function ipv6Untraceable(config: Config): boolean {
  try {
    return hasIpv6Clients(discover(config));
  } catch (error) {
    // The eduVPN step has reported this already.
    if (isTnatError(error)) return false;
    throw error;
  }
}

export const checkCommand: Command = {
  name: 'check',
  options: {},
  run: (context) => runChecks(context),
};
