/**
 * What a boot would not load of our rules, for the backend in use: the one sentence the
 * daemon's start, `status` and (for nftables) `check` give.
 */
import type { Config } from '../config.js';
import { iptablesBootProblem } from './iptables-boot.js';
import { nftBootProblem, type BootProblem } from './nft-boot.js';

export function bootProblem(firewall: Config['firewall']): BootProblem | undefined {
  return firewall.backend === 'nftables'
    ? nftBootProblem(firewall.rulesFile)
    : iptablesBootProblem([
        { file: firewall.rulesFile, family: 4 },
        { file: firewall.rulesFile6, family: 6 },
      ]);
}
