// The fleet view end to end: fake CI jobs (shells carrying GitHub Actions' and GitLab's
// variables), a real `sentry watch --discover ci` recording them to a real store, the real
// `sentry dashboard` on that store, and headless Chromium reading, filtering and sorting the
// live jobs, opening one, and seeing another end.
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Browser,
  type Dashboard,
  type FakeJob,
  KEY,
  openBrowser,
  requireChromium,
  type Run,
  screenshot,
  startDashboard,
  startFakeJob,
  startWatch,
  tempDir,
} from './harness';

const hasChromium = requireChromium();

// `--discover ci` sees every CI job on the host, this test's and any other's: a tag in the
// runner names keeps this test to its own jobs (through the page's own text filter).
const tag = `e2e${randomBytes(3).toString('hex')}`;
const QUIET_JOB = 'while :; do sleep 0.2; done';

function github(job: string, runner: string): Record<string, string> {
  return {
    RUNNER_TRACKING_ID: `github_${randomBytes(8).toString('hex')}`,
    GITHUB_ACTIONS: 'true',
    GITHUB_REPOSITORY: 'acme/web',
    GITHUB_WORKFLOW: 'ci',
    GITHUB_JOB: job,
    GITHUB_RUN_ID: String(Date.now()),
    RUNNER_NAME: runner,
  };
}

const gitlab: Record<string, string> = {
  CI_JOB_ID: String(Date.now() % 1_000_000),
  GITLAB_CI: 'true',
  CI_PROJECT_PATH: 'acme/api',
  CI_PIPELINE_SOURCE: 'push',
  CI_JOB_NAME: 'lint',
  CI_RUNNER_DESCRIPTION: `${tag}-gl`,
};

describe.skipIf(!hasChromium)('the fleet view in Chromium', () => {
  let dir: string;
  let dash: Dashboard | undefined;
  let watch: Run | undefined;
  let browser: Browser | undefined;
  let page: Page;
  const jobs: Record<string, FakeJob> = {};

  const rows = () => page.locator('table.fleet tbody tr');
  const row = (job: string): Locator => rows().filter({ has: page.getByRole('link', { name: new RegExp(`^${job} \\(run \\d+\\)$`) }) });
  const cell = (job: string, label: string) => row(job).locator(`td[data-label="${label}"]`);
  const jobOrder = async () => (await page.locator('table.fleet tbody td.job a').allTextContents()).map((t) => t.trim());
  // Waits (up to 10 s) for the table to show these jobs in this order: the table re-renders
  // after the address changes, not with it.
  const untilJobOrder = async (jobs: string[]) => {
    await page
      .waitForFunction(
        (want) =>
          JSON.stringify([...document.querySelectorAll('table.fleet tbody td.job a')].map((a) => a.textContent?.trim())) ===
          JSON.stringify(want),
        jobs,
        { timeout: 10_000 },
      )
      .catch(() => undefined);
    expect(await jobOrder()).toEqual(jobs);
  };

  beforeAll(async () => {
    dir = tempDir();
    const db = join(dir, 'sentry.db');
    dash = await startDashboard(db);
    watch = startWatch(db);
    jobs.build = startFakeJob(github('build', `${tag}-1`), QUIET_JOB);
    jobs.test = startFakeJob(github('test', `${tag}-2`), QUIET_JOB);
    jobs.lint = startFakeJob(gitlab, QUIET_JOB);
    browser = await openBrowser();
    page = browser.page;
  });

  afterAll(async () => {
    for (const j of Object.values(jobs)) await j.kill();
    await watch?.stop();
    await browser?.close();
    await dash?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lists the live watched jobs with their labels and state', async () => {
    await page.goto(`${dash!.url}/#token=${KEY}`);
    await page.getByRole('heading', { name: 'Runs' }).waitFor();
    await page.getByRole('navigation').getByRole('link', { name: 'Fleet' }).click();
    await page.getByRole('heading', { name: 'Fleet' }).waitFor();
    await page.getByLabel('Search', { exact: true }).fill(tag);
    await page.waitForURL(new RegExp(`#/fleet\\?q=${tag}`));
    await page.waitForFunction(() => document.querySelectorAll('table.fleet tbody tr').length === 3, undefined, {
      timeout: 30_000,
    });
    expect(await cell('build', 'Repository').textContent()).toBe('acme/web');
    expect(await cell('build', 'Workflow').textContent()).toBe('ci');
    expect(await cell('build', 'CI').textContent()).toBe('github');
    expect(await cell('build', 'Runner').textContent()).toBe(`${tag}-1`);
    expect(await cell('lint', 'Repository').textContent()).toBe('acme/api');
    expect(await cell('lint', 'CI').textContent()).toBe('gitlab');
    for (const job of ['build', 'test', 'lint']) {
      expect(await cell(job, 'State').textContent(), watch!.stderr()).toBe('running');
    }
    // The duration ticks while live.
    const before = await cell('build', 'Started').textContent();
    await page.waitForFunction(
      (b) => document.querySelector('table.fleet tbody td[data-label="Started"]')?.textContent !== b,
      before,
      { timeout: 5_000 },
    );
    // The cost figures arrive while the jobs run (kept current every few seconds).
    await page.waitForFunction(
      () =>
        [...document.querySelectorAll('table.fleet tbody td[data-label="Idle"]')].some((td) =>
          /\d%/.test(td.textContent ?? ''),
        ),
      undefined,
      { timeout: 30_000 },
    );
    await screenshot(page, 'fleet-live');
  });

  it('filters by text, CI platform and state, in the address', async () => {
    await page.getByLabel('CI', { exact: true }).selectOption('gitlab');
    await page.waitForURL(/ci=gitlab/);
    await untilJobOrder(['lint']);
    await page.getByLabel('CI', { exact: true }).selectOption('');
    await page.getByLabel('Search', { exact: true }).fill(`${tag} build`);
    await page.waitForFunction(() => document.querySelectorAll('table.fleet tbody tr').length === 1);
    expect(await jobOrder()).toEqual(['build']);
    await page.getByLabel('Search', { exact: true }).fill(`${tag} nothing-matches-this`);
    await page.getByText('No watched jobs match these filters.').waitFor();
    await page.getByLabel('Search', { exact: true }).fill(tag);
    await page.getByLabel('State', { exact: true }).selectOption('live');
    await page.waitForURL(/state=live/);
    await page.waitForFunction(() => document.querySelectorAll('table.fleet tbody tr').length === 3);
    // A link to the filtered view opens it as it was.
    await page.reload();
    await page.waitForFunction(() => document.querySelectorAll('table.fleet tbody tr').length === 3, undefined, {
      timeout: 15_000,
    });
    expect(await page.getByLabel('Search', { exact: true }).inputValue()).toBe(tag);
    expect(await page.getByLabel('State', { exact: true }).inputValue()).toBe('live');
  });

  it('sorts by the column headers, with the mouse and the keyboard', async () => {
    // Waits until the header named `name` says it sorts `dir` (the table re-renders after the
    // click or key press, and the sort also goes through the address).
    const sortedBy = (name: RegExp, dir: 'ascending' | 'descending') =>
      page.locator(`th[aria-sort="${dir}"]`, { has: page.getByRole('button', { name }) }).waitFor();
    const jobHeader = page.locator('th', { has: page.getByRole('button', { name: /^Job/ }) });
    await page.getByRole('button', { name: /^Job/ }).click();
    await sortedBy(/^Job/, 'ascending');
    expect(await jobOrder()).toEqual(['build', 'lint', 'test']);
    await page.getByRole('button', { name: /^Job/ }).click();
    await sortedBy(/^Job/, 'descending');
    expect(await jobOrder()).toEqual(['test', 'lint', 'build']);
    await page.waitForURL(/sort=job&dir=desc/);
    // Keyboard: Tab to a header's button, Enter sorts by it.
    await page.getByRole('button', { name: /^Runner/ }).focus();
    await page.keyboard.press('Enter');
    await sortedBy(/^Runner/, 'ascending');
    expect(await jobHeader.getAttribute('aria-sort')).toBeNull();
    expect(await jobOrder()).toEqual(['build', 'test', 'lint']);
    await screenshot(page, 'fleet-sorted');
  });

  it('opens a job in the same run view as a local run', async () => {
    const link = row('build').getByRole('link', { name: /^build \(run \d+\)$/ });
    const id = Number(/run (\d+)/.exec((await link.getAttribute('aria-label')) ?? '')?.[1]);
    await link.click();
    await page.waitForURL(new RegExp(`#/runs/${id}$`));
    await page.getByRole('heading', { name: new RegExp(`^Run ${id}`) }).waitFor();
    await page.locator('h1 .badge').getByText('running').waitFor();
    await page.locator('.chart-canvas').first().waitFor({ timeout: 15_000 });
    await screenshot(page, 'fleet-run');
    await page.getByRole('link', { name: 'The fleet' }).click();
    await page.getByRole('heading', { name: 'Fleet' }).waitFor();
  });

  it('shows a job ended once its processes are gone', async () => {
    await page.evaluate((t) => (window.location.hash = `#/fleet?q=${t}`), tag);
    await page.waitForFunction(() => document.querySelectorAll('table.fleet tbody tr').length === 3, undefined, {
      timeout: 15_000,
    });
    await jobs.test!.kill();
    await cell('test', 'State').getByText('exited').waitFor({ timeout: 20_000 });
    expect(await cell('build', 'State').textContent()).toBe('running');
    await screenshot(page, 'fleet-ended');
    await page.getByLabel('State', { exact: true }).selectOption('ended');
    await page.waitForFunction(() => document.querySelectorAll('table.fleet tbody tr').length === 1);
    expect(await jobOrder()).toEqual(['test']);
    await page.getByLabel('State', { exact: true }).selectOption('live');
    await page.waitForFunction(() => document.querySelectorAll('table.fleet tbody tr').length === 2);
    expect((await jobOrder()).sort()).toEqual(['build', 'lint']);
  });

  it('fits a phone screen', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.evaluate((t) => (window.location.hash = `#/fleet?q=${t}`), tag);
    await page.waitForFunction(() => document.querySelectorAll('table.fleet tbody tr').length === 3);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow).toBeLessThanOrEqual(1);
    // The headers are hidden on a phone; the sort select stands in for them.
    await page.getByLabel('Sort by', { exact: true }).selectOption('job:asc');
    await untilJobOrder(['build', 'lint', 'test']);
    await screenshot(page, 'fleet-phone');
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it('logged no script error and no Content-Security-Policy violation', () => {
    expect(browser!.problems).toEqual([]);
  });
});
