/**
 * The options that come before the command, as in `git -C DIR`, `nft -f FILE` or `systemctl
 * --user`: `traceable-nat --config FILE trace ...`. They stop at the first word that is not an
 * option (the command); everything after it belongs to the command.
 */
import { parseArgs } from 'node:util';
import { DEFAULT_CONFIG_FILE } from '../config-path.js';
import { TnatError } from '../errors.js';

export interface GlobalOptions {
  readonly config: string | undefined;
  readonly help: boolean;
  readonly version: boolean;
  /** The command's name, if one was given. */
  readonly command: string | undefined;
  /** The arguments after the command's name. */
  readonly rest: readonly string[];
}

const GLOBAL_OPTIONS = {
  config: { type: 'string', short: 'C' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
} as const;

/** A --config value, before or after the command: an empty one would be read as a file "". */
export function configFileOption(value: string | undefined): string | undefined {
  if (value === '') {
    throw new TnatError(
      'E_USAGE',
      `--config (-C) needs a path: give the configuration file, like --config ${DEFAULT_CONFIG_FILE}`,
    );
  }
  return value;
}

export function parseGlobalOptions(args: readonly string[]): GlobalOptions {
  // A loose pass finds where the command starts: the first positional that is no option's value
  // (`--config FILE` takes FILE, since config is a string option here).
  const { tokens } = parseArgs({
    args: [...args],
    options: GLOBAL_OPTIONS,
    allowPositionals: true,
    strict: false,
    tokens: true,
  });
  const first = tokens.find(
    (token) => token.kind === 'positional' || token.kind === 'option-terminator',
  );
  const commandAt = first?.index ?? args.length;
  const commandName = first?.kind === 'positional' ? first.value : args[commandAt + 1];
  const restAt = first?.kind === 'positional' ? commandAt + 1 : commandAt + 2;
  // The strict pass over what comes before it: an unknown option there is a usage error.
  const { values } = parseArgs({
    args: args.slice(0, commandAt),
    options: GLOBAL_OPTIONS,
    allowPositionals: false,
    strict: true,
  });
  return {
    config: configFileOption(values.config),
    help: values.help === true,
    version: values.version === true,
    command: commandName,
    rest: args.slice(restAt),
  };
}
