// The CLI as the operator runs it: the compiled dist/src bundled by esbuild into a few files
// under dist/bundle (one per command, loaded when that command runs, plus shared chunks).
// Node 20 has no compile cache, and loading the ~300 small ES modules of zod, yaml and
// ip-address one by one costs a `trace` about 100 ms of its start; one file each costs less.
// The packages with native addons or worker files stay in node_modules, loaded as they are.
import { writeFileSync } from 'node:fs';
import { build } from 'esbuild';

const { metafile } = await build({
  entryPoints: ['dist/src/cli/main.js'],
  outdir: 'dist/bundle',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['better-sqlite3', 'sd-notify', 'pino', 'chokidar'],
  // yaml is CommonJS and requires node's own modules; an ES bundle has no `require` of its own.
  banner: {
    js: "import { createRequire as createRequireForBundle } from 'node:module'; const require = createRequireForBundle(import.meta.url);",
  },
  logLevel: 'warning',
  metafile: true,
});
// Which compiled modules each bundle file holds: what a test reads to tell what a command loads.
writeFileSync('dist/bundle/meta.json', JSON.stringify(metafile, null, 1));
