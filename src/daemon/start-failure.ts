/**
 * Which failures of the first apply must fail the daemon's start. Those of the environment (a
 * directory that cannot be created, read or written, a tool that is not installed, the lock
 * held by another applier) do: the daemon exits before READY=1, so `systemctl enable --now`
 * reports it and `Restart=on-failure` tries again (issue 12: a fresh machine without
 * /etc/iptables sat "active (running)" with no rule loaded), and so do archives that every apply
 * would refuse to chain to (anchor.ts). Bad or half-written eduVPN files
 * (E_SOURCE, E_MAPPING, E_RULES_FILE ...) do not: the kernel's rules stay, the unit stays up
 * with STATUS= saying what is wrong, and the next change of the files is applied.
 */
import { CommandError, isTnatError } from '../errors.js';

export function isEnvironmentFailure(error: unknown): boolean {
  if (error instanceof CommandError) return error.exitCode === null; // could not be started
  if (!isTnatError(error)) return false;
  if (error.code === 'E_WRITE' || error.code === 'E_LOCK') return true;
  // The archive directory cannot be listed (a file where it should be, no permission), or its
  // newest archive is not the anchored one, or one is dated in the future: every apply would
  // be refused, so the operator must look now (`systemctl` reports the failed start).
  return error.code === 'E_ARCHIVE';
}
