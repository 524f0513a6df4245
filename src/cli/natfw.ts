/**
 * `vpn-generate-natfw`: the original eduVPN script's command line, served by traceable-nat.
 * -n dry run, -f force, -v verbose, -w FILE the rules file, -c COMMAND run after a new ruleset
 * was written, --config FILE (ours). Unlike the original, -c defaults to nothing: the NAT part
 * is loaded directly, so the firewall needs no restart.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config-file.js';
import { DEFAULT_CONFIG_FILE, firewallFiles, isArchivePath, type Config } from '../config.js';
import { TnatError } from '../errors.js';
import { runApply } from './apply.js';
import { EXIT, type CliIo } from './io.js';
import { reportError } from './report-error.js';

const HELP = `usage: vpn-generate-natfw [-n] [-f] [-v] [-w FILE] [-c COMMAND] [--config FILE]
  -n          dry run: print the rules file that would be written, change nothing
  -f          apply and archive even when nothing changed
  -v          verbose: also say when nothing changed
  -w FILE     the rules file (default from the configuration: /etc/iptables/rules.v4)
  -c COMMAND  run COMMAND after a new rules file was written (default: none)
  --config F  traceable-nat configuration (default ${DEFAULT_CONFIG_FILE})
  -h, --help  this help
`;

const OPTIONS = {
  n: { type: 'boolean', short: 'n' },
  f: { type: 'boolean', short: 'f' },
  v: { type: 'boolean', short: 'v' },
  w: { type: 'string', short: 'w' },
  c: { type: 'string', short: 'c' },
  config: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** What each option with a value takes, said when it is given none. */
const NEEDS: Readonly<Record<string, string>> = {
  '-w': 'a path: the rules file to write, like -w /etc/iptables/rules.v4',
  '-c': 'a command: the one to run after a new rules file was written',
  '--config': `a path: give the configuration file, like --config ${DEFAULT_CONFIG_FILE}`,
};
const FLAGS = new Set(['-n', '-f', '-v', '-h', '--help']);
const SEE_HELP = '; run vpn-generate-natfw --help';

/**
 * Each argument checked as the operator typed it, before parseArgs: its own errors name options
 * as "Option '-w, --w <value>'", and it takes --w=FILE and --n, which the help never offers.
 */
function checkArguments(args: readonly string[]): void {
  const { tokens } = parseArgs({
    args: [...args],
    options: OPTIONS,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const usage = (sentence: string) => new TnatError('E_USAGE', sentence);
  for (const token of tokens) {
    if (token.kind === 'positional') {
      throw usage(
        `unexpected argument ${JSON.stringify(token.value)}: give the rules file with -w FILE${SEE_HELP}`,
      );
    }
    if (token.kind !== 'option') continue;
    const needs = NEEDS[token.rawName];
    const typed = args[token.index] ?? token.rawName;
    if (needs !== undefined) {
      if (token.value === undefined || token.value === '') {
        throw usage(`${token.rawName} needs ${needs}`);
      }
      // `-w -n` gives -w the value -n, which parseArgs then calls ambiguous.
      if (!token.inlineValue && token.value.startsWith('-')) {
        throw usage(`${token.rawName} needs ${needs}, not the option ${token.value}`);
      }
    } else if (!FLAGS.has(token.rawName)) {
      // In a group (-nx), the group as typed too.
      const group = !typed.startsWith('--') && typed !== token.rawName ? ` in ${typed}` : '';
      throw usage(`unknown option ${token.rawName}${group}${SEE_HELP}`);
    } else if (token.value !== undefined) {
      throw usage(`${token.rawName} takes no value${SEE_HELP}`);
    }
  }
}

/** `-w` naming a file the configuration gives another role, as the schema refuses for its keys. */
function checkRulesFileOption(rulesFile: string, config: Config, configFile: string): void {
  const clash = firewallFiles(config.firewall).find(
    (file) => file.key !== 'rulesFile' && resolve(file.path) === resolve(rulesFile),
  );
  if (clash) {
    throw new TnatError(
      'E_USAGE',
      `-w ${JSON.stringify(rulesFile)} is also ${clash.label} in ${configFile}: give -w a path of its own`,
    );
  }
  if (isArchivePath(rulesFile, config.firewall.archiveDir)) {
    throw new TnatError(
      'E_USAGE',
      `-w ${JSON.stringify(rulesFile)} is named as an archive of firewall.archiveDir (${config.firewall.archiveDir}), and archives are never written over: give -w another file`,
    );
  }
}

export async function runNatfw(args: readonly string[], io: CliIo): Promise<number> {
  try {
    checkArguments(args);
    const { values } = parseArgs({ args: [...args], options: OPTIONS, strict: true });
    if (values.help) {
      io.stdout(HELP);
      return EXIT.ok;
    }
    const configFile = values.config ?? DEFAULT_CONFIG_FILE;
    let config: Config | undefined;
    const load = (): Config => {
      if (config) return config;
      const loaded = loadConfig(configFile);
      if (values.w !== undefined) checkRulesFileOption(values.w, loaded, configFile);
      config = {
        ...loaded,
        firewall: {
          ...loaded.firewall,
          ...(values.w === undefined ? {} : { rulesFile: values.w }),
          ...(values.c === undefined ? {} : { afterWrite: values.c }),
        },
      };
      return config;
    };
    return await runApply(
      { io, configFile, config: load },
      {
        dryRun: values.n === true,
        force: values.f === true,
        verbose: values.v === true,
        json: false,
      },
    );
  } catch (error) {
    return reportError(error, io, 'vpn-generate-natfw');
  }
}
