// The operations dashboard (`/ops` of dtask-http) end to end in a real
// headless Chromium: the overview counts the tasks, the task list links to
// a task's timeline (a bar per attempt, its worker, the trace id), the dead
// letters list a task a worker gave up on and retry it to completion, and
// the workers view lists the worker.
//
//   DTASK_OPS_URL=http://127.0.0.1:PORT DTASK_DONE_TASK=ID DTASK_DEAD_TASK=ID \
//   DTASK_WORKER_ID=NAME node --test apps/dtask-demo/e2e/ops.test.mjs
//
// `cargo test -p dtask-demo --test dashboard_e2e` sets that up and runs it.
// Screenshots go to $DTASK_SCREENSHOT_DIR (default /tmp).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const required = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`set ${name}`);
  return value;
};
const SERVER = required('DTASK_OPS_URL');
const DONE = required('DTASK_DONE_TASK');
const DEAD = required('DTASK_DEAD_TASK');
const WORKER = required('DTASK_WORKER_ID');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SHOTS = process.env.DTASK_SCREENSHOT_DIR || '/tmp';

let profile;
let context;

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium`);
  profile = mkdtempSync(join(tmpdir(), 'dtask-ops-profile-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    timeout: 60_000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

async function open(hash) {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(`page error: ${error.message}`));
  page.on('console', (message) => { if (message.type() === 'error') errors.push(`console: ${message.text()}`); });
  await page.goto(`${SERVER}/ops${hash}`);
  return { page, errors };
}

const text = (page, testid) => page.getByTestId(testid).textContent();

test('an operator sees what runs, what failed and why, which worker ran each step, and retries a dead letter', async () => {
  const { page, errors } = await open('#/overview');
  await page.getByTestId('status-counts').waitFor();
  await page.waitForFunction(() => Number(document.querySelector('[data-testid="count-completed"] .n')?.textContent) >= 1);
  await page.getByTestId('throughput-chart').waitFor();
  assert.match(await text(page, 'failure-rate'), /ended/);
  assert.match(await text(page, 'dead-letter-count'), /^1 dead letter/);
  await page.getByTestId('queue-file-processing').waitFor();
  await page.screenshot({ path: join(SHOTS, 'dtask-ops-overview.png'), fullPage: true });

  // The task list, then the completed task's timeline.
  await page.getByTestId('nav-tasks').click();
  await page.getByTestId(`task-row-${DONE}`).waitFor();
  assert.equal(await text(page, `task-status-${DONE}`), 'completed');
  await page.screenshot({ path: join(SHOTS, 'dtask-ops-tasks.png'), fullPage: true });
  await page.getByTestId(`task-row-${DONE}`).getByRole('link').click();
  await page.getByTestId('timeline').waitFor();
  for (const step of ['UploadSourceFiles', 'CreateZipArchive', 'UploadZip']) {
    await page.getByTestId(`attempt-${step}-run-1`).waitFor();
  }
  assert.match(await page.getByTestId('attempt-CreateZipArchive-run-1').getAttribute('class'), /succeeded/);
  assert.match(await page.getByTestId('attempt-CreateZipArchive-run-1').getAttribute('title'), new RegExp(`on ${WORKER}`));
  assert.match(await text(page, 'trace-id'), /^[0-9a-f]{32}$/);
  assert.match(await page.getByTestId('attempts').textContent(), new RegExp(WORKER));
  assert.match(await page.getByTestId('audit').textContent(), /submit/);
  await page.screenshot({ path: join(SHOTS, 'dtask-ops-task.png'), fullPage: true });

  // The dead letter, with its reason, retried from the page.
  await page.getByTestId('nav-dead-letters').click();
  await page.getByTestId(`dead-letter-${DEAD}`).waitFor();
  assert.match(await page.getByTestId(`dead-letter-${DEAD}`).textContent(), /a downstream service refused it/);
  await page.screenshot({ path: join(SHOTS, 'dtask-ops-dead-letters.png'), fullPage: true });
  await page.getByTestId(`retry-${DEAD}`).click();
  await page.waitForFunction((id) => location.hash === `#/task/${id}`, DEAD);
  await page.waitForFunction(() => document.querySelector('[data-testid="task-status"]')?.textContent === 'completed',
    null, { timeout: 60_000 });
  await page.getByTestId('attempt-CreateZipArchive-run-1').waitFor();
  await page.screenshot({ path: join(SHOTS, 'dtask-ops-retried.png'), fullPage: true });
  await page.getByTestId('nav-dead-letters').click();
  await page.getByTestId('no-dead-letters').waitFor();

  // The workers.
  await page.getByTestId('nav-workers').click();
  await page.getByTestId(`worker-${WORKER}`).waitFor();
  assert.match(await page.getByTestId(`worker-${WORKER}`).textContent(), /file-processing/);
  await page.screenshot({ path: join(SHOTS, 'dtask-ops-workers.png'), fullPage: true });
  assert.deepEqual(errors, [], 'no page errors');
});
