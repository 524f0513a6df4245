/**
 * `trace --batch -` as a real process reading its standard input, and what a `trace` process
 * loads: a module resolve hook (node:module register) logs every module the built CLI imports
 * (bundle files are read as the compiled modules they hold), and a trace must not import the
 * watcher, the logger, the daemon or the netfilter code.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { A, createSite, T0, type Site } from './trace-batch-site.js';

const CLI = resolve('bin/traceable-nat');

let site: Site;

beforeAll(() => {
  site = createSite('tnat-batch-process-');
  writeFileSync(
    join(site.dir, 'hooks.mjs'),
    [
      "import { appendFileSync } from 'node:fs';",
      'export async function resolve(specifier, context, next) {',
      '  const result = await next(specifier, context);',
      "  appendFileSync(process.env.TNAT_MODULE_LOG, result.url + '\\n');",
      '  return result;',
      '}',
      '',
    ].join('\n'),
  );
  writeFileSync(
    join(site.dir, 'register.mjs'),
    `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(join(site.dir, 'hooks.mjs')).href)});\n`,
  );
});

afterAll(() => {
  site.remove();
});

function cli(args: readonly string[], input = '', env: Record<string, string> = {}) {
  const result = spawnSync(process.execPath, [CLI, ...args], {
    input,
    encoding: 'utf8',
    timeout: 30_000,
    env: { PATH: process.env.PATH ?? '', TZ: 'UTC', ...env },
  });
  if (result.error) throw result.error;
  return result;
}

describe('trace --batch - reads standard input', () => {
  test('CSV on stdin, JSON lines out, exit status of the worst row', () => {
    const input = `time,address,port\n${T0 + 100},${A},65024\n${T0 + 100},${A},1\nnonsense,${A},65024\n`;
    const result = cli(['trace', '--config', site.config, '--batch', '-', '--json'], input);
    expect(result.stderr).toBe('');
    const rows = result.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { row: number; status: string; reason?: string });
    expect(rows.map((row) => [row.row, row.status])).toEqual([
      [1, 'found'],
      [2, 'not-found'],
      [3, 'bad-input'],
    ]);
    expect(rows[2]?.reason).toMatch(/^standard input line 4: "nonsense" is not a time/);
    expect(result.status).toBe(2);
  });

  test('JSON lines on stdin, CSV out', () => {
    const input = `{"time": ${T0 + 100}, "address": "${A}", "port": 65024, "ticket": "T-1"}\n`;
    const result = cli(['trace', '--config', site.config, '--batch', '-'], input);
    expect(result.stdout.split('\n')[0]).toBe(
      'time,address,port,ticket,status,client,user,profile,notes',
    );
    expect(result.stdout.split('\n')[1]).toMatch(
      `${T0 + 100},${A},65024,T-1,found,10.42.0.2,user2,internet,`,
    );
    expect(result.status).toBe(0);
  });
});

describe('what a trace process loads', () => {
  function modulesOf(args: readonly string[]): string[] {
    const log = join(site.dir, `modules-${args[0] ?? ''}.log`);
    writeFileSync(log, '');
    const result = cli(args, '', {
      TNAT_MODULE_LOG: log,
      NODE_OPTIONS: `--import ${pathToFileURL(join(site.dir, 'register.mjs')).href}`,
    });
    expect(result.stderr).toBe('');
    // bin/ runs the bundle (scripts/bundle.mjs): each bundle file stands for the compiled
    // modules it holds, as esbuild's metafile lists them.
    return readFileSync(log, 'utf8')
      .split('\n')
      .filter(Boolean)
      .flatMap((url) => {
        const path = url.startsWith('file:') ? relative(process.cwd(), fileURLToPath(url)) : url;
        const held = bundle.outputs[path]?.inputs;
        return held ? Object.keys(held).map((input) => `/${input}`) : [url];
      });
  }

  const bundle = JSON.parse(readFileSync('dist/bundle/meta.json', 'utf8')) as {
    outputs: Record<string, { inputs: Record<string, unknown> }>;
  };

  const heavy =
    /\/node_modules\/(pino|chokidar|sd-notify)\/|\/dist\/src\/(daemon|netfilter|apply)\//;

  test('trace and trace --batch load neither the watcher, the logger, the daemon nor netfilter', () => {
    const single = modulesOf([
      'trace',
      '--config',
      site.config,
      '--at',
      String(T0 + 100),
      '--port',
      '65024',
    ]);
    expect(single.some((url) => url.endsWith('/dist/src/trace/trace.js'))).toBe(true);
    expect(single.filter((url) => heavy.test(url))).toEqual([]);
    const file = join(site.dir, 'one.csv');
    writeFileSync(file, `time,address,port\n${T0 + 100},${A},65024\n`);
    const batch = modulesOf(['trace', '--config', site.config, '--batch', file]);
    expect(batch.some((url) => url.endsWith('/dist/src/trace/batch-archives.js'))).toBe(true);
    expect(batch.filter((url) => heavy.test(url))).toEqual([]);
  });

  test('the hook sees them when a command needs them (daemon --help)', () => {
    const daemon = modulesOf(['daemon', '--help']);
    expect(daemon.some((url) => url.includes('/dist/src/daemon/'))).toBe(true);
    expect(daemon.some((url) => url.includes('/node_modules/pino/'))).toBe(true);
  });
});
