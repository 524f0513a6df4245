/**
 * `traceable-nat daemon`: applies once at start, then again whenever the eduVPN files change
 * (after they settle), verifies the kernel periodically, and talks to systemd. It never removes
 * the rules: when it stops, the firewall stays as it is.
 */
import type { Logger } from 'pino';
import { applyRuleset, type TrustedPlan } from '../apply/apply.js';
import { keepTrust, restoreTrust, type KeptTrust } from '../apply/kept-plan.js';
import type { Config } from '../config.js';
import type { Discovery } from '../eduvpn/pool.js';
import { CommandError, isTnatError } from '../errors.js';
import { formatIpv4 } from '../net/ipv4.js';
import type { CommandRunner } from '../netfilter/runner.js';
import type { Clock } from '../system/clock.js';
import type { BootProblem } from '../system/nft-boot.js';
import type { Notifier } from './notify.js';
import { isEnvironmentFailure } from './start-failure.js';
import { Settler, type Timers } from './settle.js';
import type { SourceWatcher } from './watch.js';

export interface DaemonDeps {
  readonly configFile: string;
  readonly loadConfig: (file: string) => Config;
  readonly discover: (config: Config) => Discovery;
  readonly watch: (
    paths: readonly string[],
    onChange: (path: string) => void,
    onError: (error: unknown) => void,
  ) => SourceWatcher;
  readonly runner: CommandRunner;
  readonly clock: Clock;
  readonly timers: Timers & {
    setInterval(callback: () => void, ms: number): unknown;
    clearInterval(handle: unknown): void;
  };
  readonly logger: Logger;
  readonly notifier: Notifier;
  /** Called after each apply, when the daemon goes idle: gives its peak memory back. */
  readonly releaseMemory?: () => void;
  /**
   * What a boot would not load of our rules (nftables: nftables.conf without our include;
   * iptables: a rules file whose load fails on an operator's jump), said once at start, after
   * the first apply: the daemon's log is where an operator looks.
   */
  readonly bootProblem?: ((config: Config) => BootProblem | undefined) | undefined;
}

function sourcePaths(config: Config): string[] {
  const { eduvpn } = config;
  return [
    eduvpn.portalConfig,
    eduvpn.profilesDir,
    eduvpn.serverApiConfig,
    eduvpn.nodeConfig,
    eduvpn.openvpnDir,
    eduvpn.wireguardConfig,
  ];
}

function errorFields(error: unknown): Record<string, unknown> {
  return isTnatError(error)
    ? { code: error.code, error: error.message }
    : {
        code: 'E_INTERNAL',
        error: error instanceof Error ? (error.stack ?? error.message) : String(error),
      };
}

export class Daemon {
  private config: Config;
  private watcher: SourceWatcher | undefined;
  private verifyTimer: unknown;
  private watchdogTimer: unknown;
  private readonly settler: Settler;
  /** What is active, as one line, and the archive that records it. */
  private active: string | undefined;
  private activeArchive: string | undefined;
  /**
   * The last ruleset this daemon applied or verified: the change path trusts it (see
   * ApplyOptions.trusted), kept without the rules file's text while the file holds it.
   */
  private kept: KeptTrust | undefined;
  /** That plan with its text read back while a change settles, for the apply after it. */
  private prepared: TrustedPlan | undefined;
  /** The last apply's error, until an apply succeeds. */
  private lastError: string | undefined;
  private lastFailure: unknown;
  /** Why the last SIGHUP's configuration was refused, until one is accepted. */
  private configError: string | undefined;
  private stopping = false;

  constructor(private readonly deps: DaemonDeps) {
    this.config = deps.loadConfig(deps.configFile);
    this.settler = new Settler(
      () => this.config.daemon.settleMs,
      () => this.applyOnce(),
      deps.timers,
      // The periodic check waits for a settle: files that never go quiet must not stop it.
      () => Math.max(this.config.daemon.settleMs, this.config.daemon.verifyIntervalMs),
    );
  }

  /**
   * Starts watching, applies (or verifies) once, then reports ready. Throws, before READY=1
   * and with no watch or timer left running, when that apply failed on the environment.
   */
  async start(): Promise<void> {
    const { logger, notifier, timers } = this.deps;
    logger.info(
      { configFile: this.deps.configFile, backend: this.config.firewall.backend },
      'daemon starting',
    );
    if (notifier.watchdogIntervalMs !== undefined) {
      this.watchdogTimer = timers.setInterval(() => {
        notifier.watchdog();
      }, notifier.watchdogIntervalMs);
    }
    // Listening before the first apply reads the files: a change made while it runs gets one
    // more apply after it, instead of waiting for the periodic check.
    this.startWatching();
    await this.requestFullCheck('start');
    const applyFailed = isEnvironmentFailure(this.lastFailure);
    const failure: unknown = applyFailed ? this.lastFailure : await this.missingTool();
    if (applyFailed || failure !== undefined) {
      this.stopWatching();
      if (this.watchdogTimer !== undefined) timers.clearInterval(this.watchdogTimer);
      logger.error(
        errorFields(failure),
        applyFailed
          ? 'daemon not started: the first apply failed'
          : 'daemon not started: conntrack is not installed',
      );
      throw failure;
    }
    notifier.ready(this.status());
    logger.info({ status: this.status() }, 'daemon ready');
    this.sayBootProblem();
  }

  private sayBootProblem(): void {
    const { logger, bootProblem } = this.deps;
    try {
      const problem = bootProblem?.(this.config);
      if (problem !== undefined)
        logger.warn({ problem: problem.text }, 'a boot does not load our rules');
    } catch (error) {
      // Only a warning was to be said: the daemon runs on.
      logger.warn(errorFields(error), 'could not tell what a boot loads');
    }
  }

  /**
   * `conntrack`, when the configuration has the apply delete the entries of changed clients
   * (firewall.flushConntrack): an apply without it only warns, since the new rules are active by
   * then, and the first apply seldom changes a block, so the start is where its absence is said.
   * Without it, a client's open connections keep their old ports after its block changes, and
   * trace names the block's new holder for them. A CommandError that could not start it, or
   * undefined.
   */
  private async missingTool(): Promise<CommandError | undefined> {
    if (!this.config.firewall.flushConntrack) return undefined;
    try {
      await this.deps.runner.run('conntrack', ['--version']);
      return undefined;
    } catch (error) {
      if (!(error instanceof CommandError) || error.exitCode !== null) return undefined;
      return new CommandError(
        `${error.message}, or set firewall.flushConntrack: false; without it, the open connections of a client whose port block changes keep their old ports, and trace names the block's new holder for them`,
        { command: error.command, exitCode: null, stderr: '', cause: error },
      );
    }
  }

  /** SIGHUP: read our own configuration again (keep the old one if the new one is invalid). */
  async reload(): Promise<void> {
    const { logger, notifier } = this.deps;
    // A SIGHUP queued behind SIGTERM: watching again would keep the process from exiting.
    if (this.stopping) return;
    notifier.reloading();
    try {
      this.config = this.deps.loadConfig(this.deps.configFile);
      this.configError = undefined;
      logger.info({ configFile: this.deps.configFile }, 'configuration reloaded');
      this.stopWatching();
      this.startWatching();
    } catch (error) {
      this.configError = `configuration not reloaded: ${isTnatError(error) ? error.message : String(error)}`;
      logger.error(errorFields(error), 'configuration rejected, keeping the previous one');
    }
    // As the periodic check: never cut a settle short (the files may be half rewritten, and an
    // apply of them would log an error, or load and archive a ruleset of the moment); the
    // settle's own apply is the full check, with the configuration read now.
    if (this.settler.settling) this.fullCheck = 'reload';
    else await this.requestFullCheck('reload');
    notifier.ready(this.status());
  }

  /** SIGTERM/SIGINT: finish an apply in progress, leave the rules in place. */
  async stop(): Promise<void> {
    const { logger, notifier, timers } = this.deps;
    this.stopping = true;
    notifier.stopping();
    logger.info({}, 'daemon stopping, rules stay in place');
    this.stopWatching();
    if (this.watchdogTimer !== undefined) timers.clearInterval(this.watchdogTimer);
    await this.settler.stop();
  }

  /**
   * Resolves when no apply is in progress: an apply waits on real I/O (the archive's gzip in
   * libuv's pool), so a test that moves time by hand waits for this before it looks.
   */
  idle(): Promise<void> {
    return this.settler.idle();
  }

  status(): string {
    const what = this.active ?? 'no ruleset applied yet';
    const archive = this.activeArchive ? `; archive ${this.activeArchive}` : '';
    const errors = [this.configError, this.lastError].filter((error) => error !== undefined);
    return `${what}${archive}${errors.length > 0 ? `; last error: ${errors.join('; ')}` : ''}`;
  }

  private startWatching(): void {
    const { logger, timers } = this.deps;
    this.watcher = this.deps.watch(
      sourcePaths(this.config),
      (path) => {
        logger.debug({ path }, 'eduVPN file changed');
        this.settler.poke();
        this.prepareTrust();
      },
      (error) => {
        logger.warn(errorFields(error), 'watching the eduVPN files failed');
      },
    );
    this.verifyTimer = timers.setInterval(() => {
      // Never cut a settle short (the files may be half rewritten): the apply that ends it
      // does the full check instead.
      if (this.settler.settling) this.fullCheck ??= 'verify';
      else void this.requestFullCheck('verify');
    }, this.config.daemon.verifyIntervalMs);
  }

  /**
   * A change has begun to settle: the kept plan's text is read back from the rules file now,
   * while the daemon waits anyway, instead of after the settle (a /16: 14.5 MB). The apply
   * checks the file's identity again itself: a file changed after this read is not trusted.
   */
  private prepareTrust(): void {
    if (this.prepared !== undefined || this.kept?.textless === undefined) return;
    if (!this.settler.settling) return;
    this.prepared = restoreTrust(this.kept, this.config.firewall.rulesFile);
  }

  private stopWatching(): void {
    if (this.verifyTimer !== undefined) this.deps.timers.clearInterval(this.verifyTimer);
    this.verifyTimer = undefined;
    void this.watcher?.close();
    this.watcher = undefined;
  }

  /** The next apply reads the kernel back (start, reload, periodic check) instead of trusting. */
  private fullCheck: string | undefined = 'start';

  private requestFullCheck(reason: string): Promise<void> {
    this.fullCheck = reason;
    return this.settler.runNow();
  }

  private async applyOnce(): Promise<void> {
    const { logger, notifier } = this.deps;
    const trigger = this.fullCheck ?? 'change';
    const full = this.fullCheck !== undefined;
    const kept = full ? undefined : this.kept;
    const trusted = kept && (this.prepared ?? restoreTrust(kept, this.config.firewall.rulesFile));
    this.prepared = undefined;
    this.fullCheck = undefined;
    /** The rules file's text, flat, when it holds the plan's (ApplyResult.rulesText). */
    let flatText: string | undefined;
    try {
      const result = await applyRuleset(
        this.config,
        { runner: this.deps.runner, clock: this.deps.clock, discover: this.deps.discover },
        { requester: 'traceable-nat daemon', trusted, kernelCheck: full ? 'full' : undefined },
      );
      flatText = result.rulesText;
      this.kept = {
        plan: result.plan,
        archive: result.activeArchive,
        archiveSha256: result.planArchive,
        config: this.config,
        rulesFile: result.rulesFile,
      };
      const { map } = result.plan;
      this.active =
        `${map.clientCount} clients on ${map.publicAddresses.map(formatIpv4).join(', ')}, ` +
        `${map.blockSize} ports each (${result.plan.backend})`;
      this.lastError = undefined;
      this.lastFailure = undefined;
      this.activeArchive = result.activeArchive;
      const fields = {
        trigger,
        outcome: result.outcome,
        archive: result.archive?.path ?? this.activeArchive ?? null,
        sha256: result.archive?.sha256 ?? null,
        clients: result.plan.map.clientCount,
        changedClients: result.changedClients,
        conntrackDeleted: result.conntrackDeleted,
        publicAddresses: result.plan.map.publicAddresses.map(formatIpv4),
        blockSize: result.plan.map.blockSize,
        backend: result.plan.backend,
        durationMs: result.durationMs,
        timings: result.timings,
        planCache: result.planCache,
        kernel: result.kernel?.summary ?? null,
        kernelRead: result.kernelRead,
        warnings: result.warnings,
      };
      if (result.outcome === 'applied') logger.info(fields, 'ruleset applied');
      else if (result.outcome === 'repaired')
        logger.warn(fields, 'kernel had drifted, ruleset loaded again');
      else if (result.outcome === 'file-updated') logger.info(fields, 'rules file rewritten');
      else logger.debug(fields, 'ruleset verified');
      for (const warning of result.warnings) logger.warn({ trigger, warning }, 'apply warning');
    } catch (error) {
      const message = isTnatError(error) ? error.message : String(error);
      // The same problem found again by the periodic check is not news.
      this.kept = undefined;
      if (message !== this.lastError)
        logger.error({ trigger, ...errorFields(error) }, 'apply failed, the active rules stay');
      this.lastError = message;
      this.lastFailure = error;
    }
    notifier.status(this.status());
    // Once the apply is logged: between applies the rules file holds the plan's text, and the
    // plan is kept without it (see keepTrust).
    if (this.kept?.plan !== undefined)
      this.kept = keepTrust({ ...this.kept, plan: this.kept.plan }, flatText);
    // Read back during this apply, it may hold the plan before it.
    this.prepared = undefined;
    this.deps.releaseMemory?.();
  }
}
