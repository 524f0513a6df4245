/**
 * A full garbage collection on demand. An apply of a /16 builds some 100 MB of text that is
 * garbage once it is loaded and archived; V8 collects it only when it next needs room, and
 * until then the daemon idles at its peak. Collected right after the apply, the pages go back
 * to the system (measured: 160 MiB to 117 MiB resident with an iptables /16). Node gives the
 * collector to programs started with --expose-gc; setting that flag at run time and taking
 * `gc` from a fresh context gives it without a wrapper around `node`.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let collect: (() => void) | undefined;

export function releaseMemory(): void {
  if (collect === undefined) {
    setFlagsFromString('--expose-gc');
    collect = runInNewContext('gc') as () => void;
  }
  collect();
}
