/**
 * `vpn-generate-natfw`: the original eduVPN script's command line, served by traceable-nat.
 * -n dry run, -f force, -v verbose, -w FILE the rules file, -c COMMAND run after a new ruleset
 * was written, --config FILE (ours). Unlike the original, -c defaults to nothing: the NAT part
 * is loaded directly, so the firewall needs no restart.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../config-file.js';
import { DEFAULT_CONFIG_FILE, type Config } from '../config.js';
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

export async function runNatfw(args: readonly string[], io: CliIo): Promise<number> {
  try {
    const { values } = parseArgs({
      args: [...args],
      options: {
        n: { type: 'boolean', short: 'n' },
        f: { type: 'boolean', short: 'f' },
        v: { type: 'boolean', short: 'v' },
        w: { type: 'string', short: 'w' },
        c: { type: 'string', short: 'c' },
        config: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    });
    if (values.help) {
      io.stdout(HELP);
      return EXIT.ok;
    }
    const configFile = values.config ?? DEFAULT_CONFIG_FILE;
    let config: Config | undefined;
    const load = (): Config => {
      if (config) return config;
      const loaded = loadConfig(configFile);
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
    return reportError(error, io);
  }
}
