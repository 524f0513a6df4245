/**
 * The network interfaces of this process's network namespace. Read from /proc/self/net/dev,
 * which always shows the reader's own namespace (sysfs shows the namespace it was mounted in,
 * which differs under `ip netns exec` without a remount, or in a container).
 */
import { readFileSync } from 'node:fs';

/** Interface names, or undefined when the list cannot be read (no /proc). */
export function listInterfaces(file = '/proc/self/net/dev'): string[] | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  // Two header lines, then `  name: counters...` per interface (proc_net(5)).
  return text
    .split('\n')
    .slice(2)
    .map((line) => line.slice(0, line.indexOf(':')).trim())
    .filter((name) => name !== '');
}

/**
 * A sentence saying that `name` is not an interface here, or undefined when it is (or when
 * the list cannot be read, so nothing is claimed).
 */
export function missingInterfaceProblem(name: string): string | undefined {
  const names = listInterfaces();
  if (names === undefined || names.includes(name)) return undefined;
  return `nat.outInterface ${name} does not exist in this network namespace (it has ${names.join(', ')}): set it to the interface towards the internet (see ip -br link)`;
}
