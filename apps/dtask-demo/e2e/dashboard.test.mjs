// The dashboard end to end in a real headless Chromium (Debian's `chromium`
// driven by playwright-core): upload two files through the page, watch the
// task's bar reach 100 %, download the zip and check it byte for byte;
// transcode a video (made with ffmpeg) and download its rendition; cancel a
// running task from the page.
//
//   DTASK_SERVER_URL=http://127.0.0.1:8080 \
//   DTASK_HANGING_SERVER_URL=http://127.0.0.1:8081 \   # a server whose CreateZipArchive never ends by itself
//   node --test apps/dtask-demo/e2e/dashboard.test.mjs
//
// `cargo test -p dtask-demo --test dashboard_e2e` starts both servers and
// runs this script. Screenshots go to $DTASK_SCREENSHOT_DIR (default /tmp).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { readZip } from './zip.mjs';

const SERVER = required('DTASK_SERVER_URL');
const HANGING_SERVER = required('DTASK_HANGING_SERVER_URL');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SHOTS = process.env.DTASK_SCREENSHOT_DIR || '/tmp';
const SUBMIT_PATH = '/api/tasks/create-zip-from-files';

let profile;
let context;

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`set ${name} to the URL of a running dtask-demo server`);
  return value;
}

function noise(length, seed) {
  const bytes = Buffer.alloc(length);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < length; i += 1) {
    state ^= state << 13; state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5; state >>>= 0;
    bytes[i] = state & 0xff;
  }
  return bytes;
}

function watchErrors(page) {
  const errors = [];
  page.on('pageerror', (error) => errors.push(`page error: ${error.message}`));
  page.on('console', (message) => { if (message.type() === 'error') errors.push(`console: ${message.text()}`); });
  return errors;
}

async function open(url) {
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.goto(url);
  await page.getByRole('heading', { name: 'New task' }).waitFor();
  return { page, errors };
}

async function submit(page, files, name) {
  await page.getByLabel(/Choose files/).setInputFiles(files);
  if (name) await page.getByLabel('Archive name').fill(name);
  const [answer] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith(SUBMIT_PATH) && r.request().method() === 'POST'),
    page.getByTestId('submit').click(),
  ]);
  assert.equal(answer.status(), 202, await answer.text());
  const body = await answer.json();
  assert.ok(body.taskId, JSON.stringify(body));
  await page.getByTestId(`task-${body.taskId}`).waitFor();
  return body.taskId;
}

async function waitForState(page, id, state, timeout = 60_000) {
  await page.waitForFunction(
    ([id, state]) => document.querySelector(`[data-testid="state-${id}"]`)?.textContent === state,
    [id, state],
    { timeout },
  );
}

const stepClass = (page, id, step) => page.getByTestId(`step-${id}-${step}`).getAttribute('class');

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium`);
  profile = mkdtempSync(join(tmpdir(), 'dtask-e2e-profile-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    acceptDownloads: true,
    viewport: { width: 1100, height: 860 },
    timeout: 60_000,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

test('two files uploaded through the page become a zip, with live progress and a download', async () => {
  const { page, errors } = await open(SERVER);
  const streams = [];
  page.on('request', (request) => { if (request.url().endsWith('/stream')) streams.push(request.url()); });
  assert.equal(await page.getByTestId('submit').isDisabled(), true, 'nothing to submit before files are chosen');
  // Record every state and bar value the page shows.
  await page.evaluate(() => {
    window.seen = [];
    new MutationObserver(() => {
      for (const bar of document.querySelectorAll('[data-testid^="progress-"]')) {
        const id = bar.dataset.testid.slice('progress-'.length);
        const state = document.querySelector(`[data-testid="state-${id}"]`)?.textContent;
        window.seen.push({ id, state, value: Number(bar.getAttribute('aria-valuenow')) });
      }
    }).observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
  });
  const hello = Buffer.from('hello from the dashboard\n');
  const data = noise(300_000, 42);
  const id = await submit(page, [
    { name: 'hello.txt', mimeType: 'text/plain', buffer: hello },
    { name: 'data.bin', mimeType: 'application/octet-stream', buffer: data },
  ], 'e2e-bundle');

  await waitForState(page, id, 'completed');
  assert.equal(await page.getByTestId(`progress-${id}`).getAttribute('aria-valuenow'), '100');
  const seen = (await page.evaluate(() => window.seen)).filter((s) => s.id === id);
  assert.ok(seen.some((s) => s.state === 'running' && s.value < 100),
    `the page showed the task running before it completed: ${JSON.stringify(seen)}`);
  assert.ok(streams.some((url) => url.includes(id)), `the bar was fed by the task's SSE stream: ${streams}`);
  for (const step of ['UploadSourceFiles', 'CreateZipArchive', 'UploadZip']) {
    assert.match(await stepClass(page, id, step), /s-completed/, step);
  }
  assert.equal(await page.getByTestId(`cancel-${id}`).count(), 0, 'no Cancel button once completed');

  const link = page.getByTestId(`download-${id}`);
  await page.getByText('Download e2e-bundle.zip').waitFor();
  await page.screenshot({ path: join(SHOTS, 'dtask-dashboard.png'), fullPage: true, animations: 'disabled' });
  const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
  assert.equal(download.suggestedFilename(), 'e2e-bundle.zip');
  const saved = join(profile, 'downloaded.zip');
  await download.saveAs(saved);
  const entries = readZip(readFileSync(saved));
  assert.deepEqual([...entries.keys()].sort(), ['data.bin', 'hello.txt']);
  assert.ok(entries.get('hello.txt').content.equals(hello), 'hello.txt round-trips');
  assert.ok(entries.get('data.bin').content.equals(data), 'data.bin round-trips byte for byte');
  assert.equal(entries.get('data.bin').method, 8, 'entries are deflated');

  // A fresh page lists the task from GET /api/tasks, still downloadable.
  await page.reload();
  await waitForState(page, id, 'completed', 10_000);
  await page.getByTestId(`download-${id}`).waitFor();

  // Narrow screens: nothing sticks out sideways.
  await page.setViewportSize({ width: 360, height: 760 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than a 360px screen`);
  await page.screenshot({ path: join(SHOTS, 'dtask-dashboard-narrow.png'), fullPage: true, animations: 'disabled' });
  assert.deepEqual(errors, []);
  await page.close();
});

test('a video chosen on the page is transcoded, and its rendition downloads', async () => {
  const { page, errors } = await open(SERVER);
  const dir = mkdtempSync(join(tmpdir(), 'dtask-e2e-video-'));
  const clip = join(dir, 'clip.mp4');
  execFileSync('ffmpeg', ['-nostdin', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc=size=1280x720:rate=5:duration=1',
    '-f', 'lavfi', '-i', 'sine=duration=1', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p',
    '-c:a', 'aac', '-shortest', clip]);
  await page.getByTestId('task-kind').selectOption('video');
  assert.equal(await page.getByTestId('output-name').isVisible(), false, 'a video takes no archive name');
  const [answer] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/api/tasks/video-transcode') && r.request().method() === 'POST'),
    page.getByLabel(/Choose files/).setInputFiles(clip).then(() => page.getByTestId('submit').click()),
  ]);
  assert.equal(answer.status(), 202, await answer.text());
  const id = (await answer.json()).taskId;
  await waitForState(page, id, 'completed');
  assert.match(await stepClass(page, id, 'Transcode720p'), /s-completed/);
  for (const step of ['Transcode1080p', 'Transcode4K']) {
    assert.match(await stepClass(page, id, step), /s-skipped/, `${step} is skipped for a 720p source`);
  }
  await page.getByText('Download clip-720p.mp4').waitFor();
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId(`download-${id}`).click()]);
  const saved = join(dir, 'downloaded.mp4');
  await download.saveAs(saved);
  const probe = JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-print_format', 'json', '-show_streams', saved]));
  const video = probe.streams.find((s) => s.codec_type === 'video');
  assert.deepEqual([video.codec_name, video.width, video.height], ['h264', 1280, 720]);
  rmSync(dir, { recursive: true, force: true });
  assert.deepEqual(errors, []);
  await page.close();
});

test('a running task is cancelled from the page and its uploads are undone', async () => {
  const { page, errors } = await open(HANGING_SERVER);
  const id = await submit(page, [{ name: 'slow.txt', mimeType: 'text/plain', buffer: Buffer.from('never zipped') }]);
  await waitForState(page, id, 'running');
  await page.waitForFunction(
    (id) => document.querySelector(`[data-testid="step-${id}-CreateZipArchive"]`)?.classList.contains('s-running'),
    id,
  );
  await page.screenshot({ path: join(SHOTS, 'dtask-dashboard-running.png'), fullPage: true, animations: 'disabled' });
  const cancel = page.getByTestId(`cancel-${id}`);
  assert.equal(await cancel.getAttribute('aria-label'), `Cancel task ${id.slice(-8)}`);
  const [answer] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'DELETE' && r.url().includes(id)),
    cancel.click(),
  ]);
  assert.equal(answer.status(), 202);
  await waitForState(page, id, 'cancelled');
  assert.equal(await page.getByTestId(`download-${id}`).count(), 0, 'no download for a cancelled task');
  assert.equal(await page.getByTestId(`cancel-${id}`).count(), 0, 'no Cancel button once cancelled');
  assert.match(await stepClass(page, id, 'UploadSourceFiles'), /s-compensated/);
  assert.doesNotMatch(await stepClass(page, id, 'CreateZipArchive'), /s-completed/);
  await page.screenshot({ path: join(SHOTS, 'dtask-dashboard-cancelled.png'), fullPage: true, animations: 'disabled' });
  assert.deepEqual(errors, []);
  await page.close();
});

test('a form on a page of another site cannot submit a task', async () => {
  // `localhost` and `127.0.0.1` are different sites to the browser: the
  // dashboard opened by one name plays the attacker's page, posting a
  // plain HTML form to the server by the other name.
  const target = new URL('/api/tasks/create-zip-from-files', SERVER);
  const attacker = new URL(SERVER);
  attacker.hostname = attacker.hostname === 'localhost' ? '127.0.0.1' : 'localhost';
  const total = async () => (await (await fetch(new URL('/api/tasks', SERVER))).json()).total;
  const before = await total();
  const page = await context.newPage();
  await page.goto(attacker.href);
  const [answer] = await Promise.all([
    page.waitForResponse((r) => r.url() === target.href && r.request().method() === 'POST'),
    page.evaluate((action) => {
      const form = document.createElement('form');
      form.method = 'POST';
      form.action = action;
      form.enctype = 'multipart/form-data';
      const field = document.createElement('input');
      field.name = 'outputFileName';
      field.value = 'forged';
      form.append(field);
      document.body.append(form);
      form.submit();
    }, target.href),
  ]);
  assert.equal(answer.status(), 403);
  const problem = await answer.json();
  assert.equal(problem.type, 'https://dtask.invalid/problems/cross-site-request');
  assert.equal(await total(), before, 'no task was created');
  await page.close();
});
