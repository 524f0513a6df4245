/**
 * The command line front end: `traceable-nat <command> [options]`. Thin: it parses arguments,
 * loads the configuration and hands over to one command file; every error that is the user's to
 * fix becomes one sentence on stderr and exit status 2, never a stack trace.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../config-file.js';
import { DEFAULT_CONFIG_FILE, type Config } from '../config.js';
import { TnatError } from '../errors.js';
import { reportError } from './report-error.js';
import type { Command, CommandContext, OptionValues } from './command.js';
import { EXIT, processIo, type CliIo } from './io.js';
import { findCommand, loadCommands } from './commands.js';

function usage(commands: readonly Command[]): string {
  const lines = commands.map(
    (command) => `  ${`${command.name} ${command.usage}`.padEnd(52)} ${command.summary}`,
  );
  return [
    'usage: traceable-nat <command> [--config FILE] [options]',
    '',
    'commands:',
    ...lines,
    '',
    `--config FILE defaults to ${DEFAULT_CONFIG_FILE}. See README.md for exit statuses and examples.`,
    '',
  ].join('\n');
}

function contextFor(io: CliIo, configFile: string): CommandContext {
  let loaded: Config | undefined;
  return {
    io,
    configFile,
    config: () => (loaded ??= loadConfig(configFile)),
  };
}

async function runCommand(command: Command, args: readonly string[], io: CliIo): Promise<number> {
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
    io.stdout(`usage: traceable-nat ${command.name} ${command.usage}\n${command.summary}\n`);
    return EXIT.ok;
  }
  const { min, max } = command.positionals ?? { min: 0, max: 0 };
  if (positionals.length < min || positionals.length > max) {
    throw new TnatError('E_USAGE', `usage: traceable-nat ${command.name} ${command.usage}`);
  }
  const configFile = typeof values.config === 'string' ? values.config : DEFAULT_CONFIG_FILE;
  return command.run(contextFor(io, configFile), values, positionals);
}

/** Runs one command line; returns the exit status. */
export async function main(args: readonly string[], io: CliIo): Promise<number> {
  const [name, ...rest] = args;
  try {
    if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
      (name === undefined ? io.stderr : io.stdout)(usage(await loadCommands()));
      return name === undefined ? EXIT.badInput : EXIT.ok;
    }
    const command = await findCommand(name);
    if (!command)
      throw new TnatError('E_USAGE', `unknown command "${name}"; run traceable-nat --help`);
    return await runCommand(command, rest, io);
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
