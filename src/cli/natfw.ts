/** Placeholder until apply lands: the vpn-generate-natfw front end. */
import { TnatError } from '../errors.js';
import { reportError } from './main.js';
import { EXIT, type CliIo } from './io.js';

export function runNatfw(args: readonly string[], io: CliIo): Promise<number> {
  void args;
  void EXIT;
  return Promise.resolve(
    reportError(new TnatError('E_USAGE', 'vpn-generate-natfw arrives with the apply command'), io),
  );
}
