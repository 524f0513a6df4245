/**
 * Every `traceable-nat` command, in the order `--help` lists them, with its help text. Each
 * command's module is imported only when that command runs (issue 15): a `trace` must not pay
 * for loading the watcher (chokidar), the logger (pino), the daemon or the netfilter code it
 * never uses, and `--help` loads none of them.
 */
import type { Command } from './command.js';

export interface CommandEntry {
  readonly name: string;
  readonly summary: string;
  /** Usage after `traceable-nat <name>`, e.g. `[--json]`. */
  readonly usage: string;
  readonly load: () => Promise<Command>;
}

export const commands: readonly CommandEntry[] = [
  {
    name: 'profiles',
    summary: 'list the client address pools found in the eduVPN configuration',
    usage: '[--json]',
    load: async () => (await import('./profiles.js')).profilesCommand,
  },
  {
    name: 'plan',
    summary: 'show the port blocks an apply would set up (changes nothing)',
    usage: '[--json]',
    load: async () => (await import('./plan.js')).planCommand,
  },
  {
    name: 'lookup',
    summary:
      "a client address's public address and port block, now or (--at) in the archived rulesets",
    usage: '<client-address> [--at TIME [--archive-dir DIR]...] [--json]',
    load: async () => (await import('./lookup.js')).lookupCommand,
  },
  {
    name: 'trace',
    summary: "an incident's (time, public address, port) -> the client address and eduVPN user",
    usage:
      '--at TIME --port PORT [--address PUBLIC] | --at TIME --address PUBLIC6 [--port PORT] [--proto tcp|udp] [--archive-dir DIR]... [--json]' +
      ' | --batch FILE|- [--archive-dir DIR]... [--json]',
    load: async () => (await import('./trace.js')).traceCommand,
  },
  {
    name: 'apply',
    summary: 'load the NAT rules if they differ, write the rules file, archive the new ruleset',
    usage: '[--dry-run] [--force] [--verify] [--verbose] [--json]',
    load: async () => (await import('./apply.js')).applyCommand,
  },
  {
    name: 'status',
    summary: 'what is active now (rules file, newest archive, kernel) and whether they agree',
    usage: '[--json]',
    load: async () => (await import('./status.js')).statusCommand,
  },
  {
    name: 'check',
    summary: 'validate the configuration and the eduVPN files; exit 0 only if all is well',
    usage: '',
    load: async () => (await import('./check.js')).checkCommand,
  },
  {
    name: 'daemon',
    summary: 'watch the eduVPN files and apply on every change (run by systemd)',
    usage: '',
    load: async () => (await import('./daemon.js')).daemonCommand,
  },
];

/** The command called `name`; undefined when there is none. */
export function findCommand(name: string): CommandEntry | undefined {
  return commands.find((entry) => entry.name === name);
}
