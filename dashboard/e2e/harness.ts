// The end-to-end harness: the real `sentry` binary (dashboard and runs) over a real store in
// a temporary directory, and Debian's headless Chromium driven by playwright-core (which
// never downloads a browser).
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { type BrowserContext, chromium, type Page } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, '../..');

export const KEY = 'e2e-key-5b0c9d2e8f7a6b4c3d2e1f0a';

export function sentryBin(): string {
  const bin = process.env.SENTRY_BIN ?? join(repoRoot, 'target/debug/sentry');
  if (!existsSync(bin)) {
    throw new Error(`${bin} is missing: build it first (cargo build -p sentry) or set SENTRY_BIN`);
  }
  return bin;
}

export function chromiumPath(): string | undefined {
  const path = process.env.CHROMIUM ?? '/usr/bin/chromium';
  return existsSync(path) ? path : undefined;
}

/** Without Chromium the suite fails in CI (or with SENTRY_E2E_REQUIRED=1) and skips elsewhere. */
export function requireChromium(): boolean {
  if (chromiumPath()) return true;
  const msg = 'Chromium is not installed (apt-get install chromium, or set CHROMIUM=/path/to/chromium)';
  if (process.env.CI === 'true' || process.env.SENTRY_E2E_REQUIRED === '1') throw new Error(msg);
  console.warn(`e2e: SKIPPED: ${msg}`);
  return false;
}

export const screenshotDir = join(repoRoot, 'target/dashboard-screenshots');

export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'sentry-ui-e2e-'));
}

export interface Dashboard {
  url: string;
  port: number;
  stop(): Promise<void>;
  output(): string;
}

/** Starts `sentry dashboard --port 0` on `db` and waits for it to say where it listens. */
export function startDashboard(db: string, key = KEY): Promise<Dashboard> {
  const child = spawn(sentryBin(), ['dashboard', '--port', '0', '--db', db], {
    env: { ...process.env, SENTRY_API_KEY: key },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stderr.on('data', (d: Buffer) => (log += d.toString()));
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`sentry dashboard did not start: ${log}`)), 20_000);
    child.on('exit', (code) => reject(new Error(`sentry dashboard exited (${code}): ${log}`)));
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      log += `${line}\n`;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(line);
      if (!m) return;
      clearTimeout(timer);
      const port = Number(m[1]);
      resolvePromise({
        url: `http://127.0.0.1:${port}`,
        port,
        output: () => log,
        stop: () => stopChild(child),
      });
    });
  });
}

export interface Run {
  child: ChildProcess;
  exit: Promise<number | null>;
  stderr(): string;
  stop(): Promise<void>;
}

/** Starts `sentry run --db DB ARGS -- sh -c SCRIPT`. */
export function startRun(db: string, args: string[], script: string): Run {
  const child = spawn(sentryBin(), ['run', '--db', db, ...args, '--', 'sh', '-c', script], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, exit, stderr: () => err, stop: () => stopChild(child) };
}

/** Starts `sentry watch --discover ci` recording to `db` (no API of its own: the dashboard serves it). */
export function startWatch(db: string, args: string[] = []): Run {
  const child = spawn(
    sentryBin(),
    ['watch', '--discover', 'ci', '--db', db, '--no-api', '--sample-interval', '0.5', ...args],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, exit, stderr: () => err, stop: () => stopChild(child) };
}

export interface FakeJob {
  pid: number;
  /** Kills the job's whole process group (the shell and whatever it started). */
  kill(): Promise<void>;
}

/**
 * A fake CI job: `sh -c SCRIPT` in its own process group with the variables a CI platform
 * sets (what `sentry watch --discover ci` finds jobs by; see `sentry/src/fleet/ci.rs`).
 */
export function startFakeJob(env: Record<string, string>, script: string): FakeJob {
  const child = spawn('sh', ['-c', script], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
    stdio: 'ignore',
    detached: true,
  });
  const pid = child.pid ?? 0;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    pid,
    kill: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
      await exited;
    },
  };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await gone;
  clearTimeout(timer);
}

export interface Browser {
  context: BrowserContext;
  page: Page;
  /** Console errors and CSP violations seen so far. */
  problems: string[];
  close(): Promise<void>;
}

/** Headless Chromium with an empty profile; every console error is collected. */
export async function openBrowser(viewport = { width: 1280, height: 900 }): Promise<Browser> {
  const executablePath = chromiumPath();
  if (!executablePath) throw new Error('no Chromium');
  const profile = tempDir();
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    viewport,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      // This machine's network is closed: no QUIC probes, no sync.
      '--disable-quic',
      '--disable-sync',
    ],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const problems: string[] = [];
  const watch = (p: Page) => {
    p.on('console', (m) => {
      if (m.type() === 'error') problems.push(m.text());
    });
    p.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  };
  watch(page);
  context.on('page', watch);
  return {
    context,
    page,
    problems,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(screenshotDir, { recursive: true });
  await page.screenshot({ path: join(screenshotDir, `${name}.png`), fullPage: true });
}

/** A shell loop that prints the same failing line forever: an output-loop runaway. */
export const RETRY_LOOP = "while true; do echo 'error: upstream refused the connection, retrying'; sleep 0.05; done";
