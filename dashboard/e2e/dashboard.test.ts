// The dashboard end to end: the real `sentry dashboard` over a real store, real `sentry run`s
// of a runaway loop, and headless Chromium clicking through it as a person would.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Browser,
  type Dashboard,
  KEY,
  openBrowser,
  requireChromium,
  RETRY_LOOP,
  type Run,
  screenshot,
  startDashboard,
  startRun,
  tempDir,
} from './harness';

const hasChromium = requireChromium();

describe.skipIf(!hasChromium)('the dashboard in Chromium', () => {
  let dir: string;
  let db: string;
  let dash: Dashboard;
  let browser: Browser;
  let page: Page;
  let run: Run | undefined;
  let runId = 0;

  beforeAll(async () => {
    dir = tempDir();
    db = join(dir, 'sentry.db');
    dash = await startDashboard(db);
    browser = await openBrowser();
    page = browser.page;
  });

  afterAll(async () => {
    await run?.stop();
    await browser?.close();
    await dash?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('loads with the key from the fragment, then takes the key out of the address bar', async () => {
    const res = await page.goto(`${dash.url}/#token=${KEY}`);
    expect(res?.status()).toBe(200);
    const csp = res?.headers()['content-security-policy'] ?? '';
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    await page.getByRole('heading', { name: 'Runs' }).waitFor();
    await page.getByText('No runs yet.').waitFor();
    expect(page.url()).not.toContain(KEY);
    expect(page.url()).not.toContain('token');
    expect(await page.evaluate(() => sessionStorage.getItem('sentry.apiKey'))).toBe(KEY);
    await page.getByText('Live', { exact: true }).waitFor();
    await screenshot(page, 'runs-empty');
  });

  it('shows a live runaway run appear, its chart move and its incident’s repeating block', async () => {
    // Paused, not killed, when caught: it stays live for the controls below.
    run = startRun(db, ['--quiet', '--action', 'pause'], RETRY_LOOP);
    const row = page.locator('tbody tr').first();
    await row.getByText('upstream refused the connection').waitFor({ timeout: 15_000 });
    runId = Number(await row.getAttribute('data-run'));
    expect(runId).toBeGreaterThan(0);
    await screenshot(page, 'runs-live');

    await row.getByRole('link', { name: `#${runId}` }).click();
    await page.getByRole('heading', { name: new RegExp(`^Run ${runId}`) }).waitFor();
    const cpu = page.locator('.chart-canvas').first();
    await page.waitForFunction(
      (el) => Number(el?.getAttribute('data-samples')) >= 2,
      await cpu.elementHandle(),
      { timeout: 15_000 },
    );
    const before = Number(await cpu.getAttribute('data-samples'));
    // New samples arrive over /stream and extend the chart without a reload.
    await page.waitForFunction(
      ([el, n]) => Number((el as Element | null)?.getAttribute('data-samples')) > (n as number),
      [await cpu.elementHandle(), before] as const,
      { timeout: 15_000 },
    );
    expect(await page.locator('canvas').count()).toBeGreaterThanOrEqual(3);

    const example = page.getByTestId('loop-example').first();
    await example.waitFor({ timeout: 15_000 });
    expect(await example.textContent()).toContain('error: upstream refused the connection, retrying');
    const evidence = (await page.locator('.evidence.loop').first().textContent()) ?? '';
    expect(evidence).toMatch(/A block of 1 line repeated \d+ times/);
    await page.locator('.verdict').getByText('Runaway: sentry paused it').waitFor();
    // The pause sentry decided is the run's recorded state, so Resume is the control offered.
    await page.locator('h1 .badge').getByText('paused').waitFor({ timeout: 10_000 });
    await screenshot(page, 'run-live');
  });

  it('has a keyboard-usable confirmation that Escape cancels and that gives focus back', async () => {
    const resume = page.getByRole('button', { name: 'Resume', exact: true });
    await resume.focus();
    await page.keyboard.press('Enter');
    const dialog = page.getByRole('dialog');
    await dialog.waitFor();
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Cancel');
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'detached' });
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Resume');
  });

  it('kills the live run after confirmation: sentry run exits 124 and the audit log shows it', async () => {
    await page.getByRole('button', { name: 'Kill', exact: true }).click();
    await page.getByRole('dialog').waitFor();
    await screenshot(page, 'run-confirm-kill');
    await page.getByRole('button', { name: `Kill run ${runId}` }).click();
    const outcome = page.locator('.outcome');
    await outcome.getByText(/kill:/).waitFor({ timeout: 15_000 });
    const code = await Promise.race([
      run!.exit,
      new Promise<string>((r) => setTimeout(() => r('still running after 15 s'), 15_000)),
    ]);
    expect(code, run!.stderr()).toBe(124);
    await page.locator('h1 .badge').getByText('stopped').waitFor({ timeout: 10_000 });
    await page.locator('.timeline').getByText(/asked to kill/).waitFor({ timeout: 10_000 });
    await screenshot(page, 'run-killed');

    await page.getByRole('navigation').getByRole('link', { name: 'Audit log' }).click();
    const auditRow = page.locator('tbody tr').filter({ hasText: `run ${runId}` }).filter({ hasText: 'kill' });
    await auditRow.first().waitFor({ timeout: 10_000 });
    expect(await auditRow.first().textContent()).toContain('ok');
    await screenshot(page, 'audit');
  });

  it('filters incidents by run, kind and action', async () => {
    await page.evaluate(() => (window.location.hash = '#/incidents'));
    await page.getByRole('heading', { name: 'Incidents' }).waitFor();
    await page.locator('article.incident').first().waitFor();
    await page.getByLabel('Kind').selectOption('output_loop');
    await page.waitForURL(/kind=output_loop/);
    await page.locator('article.incident').first().waitFor();
    await page.getByLabel('Action').selectOption('restart');
    await page.getByText('No incidents match these filters.').waitFor();
    await page.getByLabel('Action').selectOption('pause');
    await page.waitForURL(/action=pause/);
    await page.getByLabel('Run').fill(String(runId));
    await page.getByRole('button', { name: 'Apply' }).click();
    await page.waitForURL(new RegExp(`run=${runId}`));
    await page.locator('article.incident').first().waitFor();
    await screenshot(page, 'incidents');
  });

  it('fits a phone screen in the dark theme', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.evaluate((id) => (window.location.hash = `#/runs/${id}`), runId);
    await page.locator('.chart-canvas canvas').first().waitFor();
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    expect(bg).toBe('rgb(13, 17, 23)');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow).toBeLessThanOrEqual(1);
    await screenshot(page, 'run-phone-dark');
    await page.evaluate(() => (window.location.hash = '#/runs'));
    await page.locator('tbody tr').first().waitFor();
    await screenshot(page, 'runs-phone-dark');
    // The toggle overrides the system's choice.
    await page.getByRole('button', { name: /^Theme:/ }).click();
    await page.waitForFunction(() => getComputedStyle(document.body).backgroundColor === 'rgb(246, 248, 250)');
    expect(await page.evaluate(() => document.documentElement.dataset.theme)).toBe('light');
    await page.emulateMedia({ colorScheme: 'light' });
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it('shows that a wrong key was refused instead of a blank page', async () => {
    const other = await browser.context.newPage();
    await other.goto(`${dash.url}/#token=not-the-key-0000000000000000`);
    const alert = other.getByRole('alert');
    await alert.getByText('The API key was refused').waitFor();
    expect(await alert.textContent()).toContain('the API key is wrong');
    expect(other.url()).not.toContain('not-the-key');
    await other.getByLabel('API key or dashboard URL').waitFor();
    await screenshot(other, 'wrong-key');
    // Pasting the printed URL recovers.
    await other.getByLabel('API key or dashboard URL').fill(`${dash.url}/#token=${KEY}`);
    await other.getByRole('button', { name: 'Use this key' }).click();
    await other.getByRole('heading', { name: 'Runs' }).waitFor();
    await other.close();
  });

  it('says so when the server goes away', async () => {
    await dash.stop();
    await page.getByText('Server unreachable, retrying…').waitFor({ timeout: 15_000 });
    await page.getByRole('link', { name: 'Audit log' }).click();
    await page.getByText('The dashboard server is not answering').waitFor({ timeout: 10_000 });
    await screenshot(page, 'server-down');
  });

  it('logged no script error and no Content-Security-Policy violation', () => {
    const serious = browser.problems.filter(
      // The browser logs refused requests (the wrong-key test, the stopped server) itself.
      (p) => !/Failed to load resource|net::ERR_CONNECTION_REFUSED|Failed to fetch/.test(p),
    );
    expect(serious).toEqual([]);
  });
});
