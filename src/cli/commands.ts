/**
 * Every `traceable-nat` command, in the order `--help` lists them. Each command's module is
 * imported only when that command runs (issue 15): a `trace` must not pay for loading the
 * watcher (chokidar), the logger (pino), the daemon or the netfilter code it never uses.
 */
import type { Command } from './command.js';

export interface CommandEntry {
  readonly name: string;
  readonly load: () => Promise<Command>;
}

export const commands: readonly CommandEntry[] = [
  { name: 'profiles', load: async () => (await import('./profiles.js')).profilesCommand },
  { name: 'plan', load: async () => (await import('./plan.js')).planCommand },
  { name: 'lookup', load: async () => (await import('./lookup.js')).lookupCommand },
  { name: 'trace', load: async () => (await import('./trace.js')).traceCommand },
  { name: 'apply', load: async () => (await import('./apply.js')).applyCommand },
  { name: 'status', load: async () => (await import('./status.js')).statusCommand },
  { name: 'check', load: async () => (await import('./check.js')).checkCommand },
  { name: 'daemon', load: async () => (await import('./daemon.js')).daemonCommand },
];

/** The command called `name`, loaded; undefined when there is none. */
export async function findCommand(name: string): Promise<Command | undefined> {
  return commands.find((entry) => entry.name === name)?.load();
}

/**
 * Every command, loaded: only `--help` needs them all. One after the other: jest's ESM loader
 * fails concurrent dynamic imports that share a dependency ("request for 'node:fs' is not in
 * cache"), and the order costs nothing here.
 */
export async function loadCommands(): Promise<Command[]> {
  const loaded: Command[] = [];
  for (const entry of commands) loaded.push(await entry.load());
  return loaded;
}
