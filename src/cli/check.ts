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
import { isTnatError, TnatError } from '../errors.js';
import { clientCount } from '../eduvpn/pool.js';
import { formatIpv4 } from '../net/ipv4.js';
import { missingInterfaceProblem } from '../system/interfaces.js';
import type { Command, CommandContext } from './command.js';
import { discover } from './discovery.js';
import { EXIT } from './io.js';
import { hasIpv6Clients, IPV6_UNTRACEABLE, planIpv6FromDisk } from './ipv6-plan.js';

interface CheckStep {
  readonly name: string;
  /** Returns a short summary on success; throws a TnatError on a problem. */
  readonly run: (config: Config) => string;
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

function runChecks(context: CommandContext): number {
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
      io.stdout(`ok    ${step.name}: ${step.run(config)}\n`);
    } catch (error) {
      if (!isTnatError(error)) throw error;
      io.stdout(`FAIL  ${step.name}: ${error.message}\n`);
      status = EXIT.badInput;
    }
  }
  // Exit 0 all the same: IPv6 without nat6 works, it is only not traceable (issue 14).
  if (config.nat6 === undefined && ipv6Untraceable(config))
    io.stdout(`warn  IPv6: ${IPV6_UNTRACEABLE}\n`);
  return status;
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
  run: (context) => Promise.resolve(runChecks(context)),
};
