// The SignalR hub at /hubs/tasks with Microsoft's own client,
// @microsoft/signalr (pinned in package.json): in Node (credentials in the
// Authorization header) and in headless Chromium (the browser bundle,
// credentials in the `access_token` query). Tokens are HS256 JWTs made
// here with node:crypto.
//
//   DTASK_SERVER_URL=http://127.0.0.1:8080 DTASK_JWT_SECRET=... DTASK_JWT_AUDIENCE=... \
//   node --test apps/dtask-demo/e2e/signalr.test.mjs
//
// `cargo test -p dtask-demo --test signalr_e2e` starts the server and runs
// this script.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as signalR from '@microsoft/signalr';
import { chromium } from 'playwright-core';

const SERVER = required('DTASK_SERVER_URL');
const SECRET = required('DTASK_JWT_SECRET');
const AUDIENCE = required('DTASK_JWT_AUDIENCE');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const BROWSER_BUNDLE = createRequire(import.meta.url).resolve('@microsoft/signalr/dist/browser/signalr.js');

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`set ${name}`);
  return value;
}

const base64url = (data) => Buffer.from(data).toString('base64url');

function jwt(subject, secret = SECRET) {
  const now = Math.floor(Date.now() / 1000);
  const header = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const claims = base64url(JSON.stringify({ sub: subject, aud: AUDIENCE, iat: now, exp: now + 600, roles: ['uploader'] }));
  const signature = createHmac('sha256', secret).update(`${header}.${claims}`).digest('base64url');
  return `${header}.${claims}.${signature}`;
}

async function submitZip(token) {
  const form = new FormData();
  form.append('listening', 'signalr');
  form.append('files', new Blob([Buffer.from('hello signalr\n')]), 'a.txt');
  form.append('files', new Blob([Buffer.alloc(4096, 7)]), 'b.bin');
  const answer = await fetch(`${SERVER}/api/tasks/create-zip-from-files`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
    body: form,
  });
  const body = await answer.json();
  assert.equal(answer.status, 202, JSON.stringify(body));
  return body.taskId;
}

function connection(token) {
  return new signalR.HubConnectionBuilder()
    .withUrl(`${SERVER}/hubs/tasks`, { accessTokenFactory: () => token })
    .configureLogging(signalR.LogLevel.Warning)
    .build();
}

// What a follower must see: the task still running when it subscribed
// (the server holds its archive step for seconds), then snapshots with
// rising revisions, the last of them the terminal one that TaskCompleted
// carries.
function checkFollowed(progress, completed, taskId) {
  assert.ok(progress.length >= 2, `several snapshots: ${JSON.stringify(progress)}`);
  assert.equal(progress[0].isComplete, false, 'subscribed while the task runs');
  const revisions = progress.map((p) => p.revision);
  for (let i = 1; i < revisions.length; i += 1) assert.ok(revisions[i - 1] < revisions[i], `${revisions}`);
  assert.ok(progress.every((p) => p.taskId === taskId));
  assert.equal(completed.status, 'completed');
  assert.equal(completed.isComplete, true);
  assert.deepEqual(progress.at(-1), completed);
  assert.equal(completed.percent, 100);
}

test('the official client in Node follows a task from subscription to completion', async () => {
  const alice = jwt('alice');
  const taskId = await submitZip(alice);
  const hub = connection(alice);
  const bob = connection(jwt('bob'));
  try {
    const progress = [];
    const completed = new Promise((resolve) => hub.on('TaskCompleted', resolve));
    hub.on('TaskProgress', (snapshot) => { progress.push(snapshot); });
    await hub.start();
    assert.equal(hub.state, signalR.HubConnectionState.Connected);
    await hub.invoke('Subscribe', taskId);
    checkFollowed(progress, await completed, taskId);

    await assert.rejects(hub.invoke('Subscribe', randomUUID()), /no task/);
    await assert.rejects(hub.invoke('Subscribe', 'not-an-id'), /not a task id/);
    await hub.invoke('Unsubscribe', taskId);

    // Another subject meets alice's task as one that does not exist.
    await bob.start();
    await assert.rejects(bob.invoke('Subscribe', taskId), new RegExp(`no task ${taskId}`));
  } finally {
    // An open connection would keep this process alive.
    await Promise.all([hub.stop(), bob.stop()]);
  }
});

test('a bad token is refused', async () => {
  for (const token of [jwt('mallory', 'not the secret, but as long as one'), 'garbage']) {
    const hub = connection(token);
    await assert.rejects(hub.start(), /401|Unauthorized/);
    assert.equal(hub.state, signalR.HubConnectionState.Disconnected);
  }
  // Skipping negotiation, straight to the WebSocket.
  const direct = new signalR.HubConnectionBuilder()
    .withUrl(`${SERVER}/hubs/tasks`, {
      accessTokenFactory: () => 'garbage',
      skipNegotiation: true,
      transport: signalR.HttpTransportType.WebSockets,
    })
    .configureLogging(signalR.LogLevel.None)
    .build();
  await assert.rejects(direct.start());
  assert.equal(direct.state, signalR.HubConnectionState.Disconnected);
});

let profile;
let context;

before(async () => {
  profile = mkdtempSync(join(tmpdir(), 'dtask-signalr-profile-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60_000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

test('the browser client follows a task with its token in the query', async () => {
  const alice = jwt('alice');
  const taskId = await submitZip(alice);
  const page = await context.newPage();
  const sockets = [];
  page.on('websocket', (socket) => sockets.push(socket.url()));
  await page.goto(`${SERVER}/healthz`);
  await page.addScriptTag({ path: BROWSER_BUNDLE });
  const { progress, completed } = await page.evaluate(async ({ token, taskId }) => {
    const hub = new signalR.HubConnectionBuilder()
      .withUrl('/hubs/tasks', { accessTokenFactory: () => token })
      .configureLogging(signalR.LogLevel.Warning)
      .build();
    const progress = [];
    const completed = new Promise((resolve) => hub.on('TaskCompleted', resolve));
    hub.on('TaskProgress', (snapshot) => { progress.push(snapshot); });
    try {
      await hub.start();
      await hub.invoke('Subscribe', taskId);
      return { progress, completed: await completed };
    } finally {
      await hub.stop();
    }
  }, { token: alice, taskId });
  checkFollowed(progress, completed, taskId);
  assert.equal(sockets.length, 1, `one WebSocket: ${sockets}`);
  const url = new URL(sockets[0]);
  assert.equal(url.pathname, '/hubs/tasks');
  assert.equal(url.searchParams.get('access_token'), alice, 'the browser sends its token in the query');
  assert.ok(url.searchParams.get('id'), 'with the negotiated connection token');
  await page.close();
});
