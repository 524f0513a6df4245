/**
 * The command line front end: `traceable-nat <command> [options]`. Thin: it parses arguments,
 * loads the configuration and hands over to one command file; every error that is the user's to
 * fix becomes one sentence on stderr and exit status 2, never a stack trace.
 */
import { parseArgs } from 'node:util';
import { TOOL_VERSION } from '../version.js';
import { DEFAULT_CONFIG_FILE } from '../config-path.js';
import type { Config } from '../config.js';
import { TnatError } from '../errors.js';
import { reportError } from './report-error.js';
import type { CommandContext, OptionValues } from './command.js';
import { EXIT, processIo, type CliIo } from './io.js';
import { commands, findCommand, type CommandEntry } from './commands.js';
import { configFileOption, parseGlobalOptions } from './global-options.js';

function usage(): string {
  const lines = commands.map(
    (command) => `  ${`${command.name} ${command.usage}`.padEnd(52)} ${command.summary}`,
  );
  return [
    'usage: traceable-nat [--config FILE] <command> [--config FILE] [options]',
    '       traceable-nat --version',
    '',
    'commands:',
    ...lines,
    '',
    `--config FILE (-C FILE), before or after the command, defaults to ${DEFAULT_CONFIG_FILE}.`,
    'See README.md for exit statuses and examples.',
    '',
  ].join('\n');
}

/** The configuration's reader (zod, yaml) is loaded only for a command that runs. */
async function contextFor(io: CliIo, configFile: string): Promise<CommandContext> {
  const { loadConfig } = await import('../config-file.js');
  let loaded: Config | undefined;
  return {
    io,
    configFile,
    config: () => (loaded ??= loadConfig(configFile)),
  };
}

async function runCommand(
  entry: CommandEntry,
  args: readonly string[],
  io: CliIo,
  globalConfig: string | undefined,
): Promise<number> {
  const command = await entry.load();
  const parsed = parseArgs({
    args: [...args],
    options: {
      config: { type: 'string', short: 'C' },
      help: { type: 'boolean', short: 'h' },
      ...command.options,
    },
    allowPositionals: true,
    strict: true,
  });
  const values = parsed.values as OptionValues;
  const positionals = parsed.positionals;
  if (values.help) {
    io.stdout(`usage: traceable-nat ${entry.name} ${entry.usage}\n${entry.summary}\n`);
    return EXIT.ok;
  }
  const { min, max } = command.positionals ?? { min: 0, max: 0 };
  if (positionals.length < min || positionals.length > max) {
    throw new TnatError('E_USAGE', `usage: traceable-nat ${entry.name} ${entry.usage}`);
  }
  // After the command wins over before it, as the later option does in most tools.
  const configFile =
    configFileOption(typeof values.config === 'string' ? values.config : undefined) ??
    globalConfig ??
    DEFAULT_CONFIG_FILE;
  return command.run(await contextFor(io, configFile), values, positionals);
}

/** Runs one command line; returns the exit status. */
export async function main(args: readonly string[], io: CliIo): Promise<number> {
  try {
    const global = parseGlobalOptions(args);
    if (global.version) {
      io.stdout(`traceable-nat ${TOOL_VERSION}\n`);
      return EXIT.ok;
    }
    const name = global.command;
    if (global.help || name === 'help' || name === undefined) {
      const asked = global.help || name === 'help';
      (asked ? io.stdout : io.stderr)(usage());
      return asked ? EXIT.ok : EXIT.badInput;
    }
    const command = findCommand(name);
    if (!command)
      throw new TnatError('E_USAGE', `unknown command "${name}"; run traceable-nat --help`);
    return await runCommand(command, global.rest, io, global.config);
  } catch (error) {
    return reportError(error, io);
  }
}

/** Entry point used by bin/: runs and exits with the status. */
export async function run(
  program: 'traceable-nat' | 'vpn-generate-natfw',
  args: readonly string[],
): Promise<void> {
  // `traceable-nat apply -n | head` closes the pipe early; that is not an error.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw error;
  });
  const io = processIo();
  process.exitCode =
    program === 'vpn-generate-natfw'
      ? await (await import('./natfw.js')).runNatfw(args, io)
      : await main(args, io);
}
