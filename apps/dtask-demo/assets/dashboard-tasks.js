'use strict';
// The task list: snapshots from GET /api/tasks, then live updates from each
// running task's SSE stream (`event: progress`, data = TaskProgress JSON).

const API = '/api/tasks';
const TERMINAL = new Set(['completed', 'failed', 'compensated', 'cancelled', 'compensationFailed']);
const LABELS = { compensationFailed: 'compensation failed', awaitingDependents: 'awaiting dependents' };
// Browsers open at most six HTTP/1.1 connections per host: stream a few
// tasks, poll the rest until a stream slot frees.
const MAX_STREAMS = 4;
const POLL_MS = 1000;
const LIST_MS = 4000;

const tasks = new Map();
const waiting = new Set();
let streams = 0;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

const label = (status) => LABELS[status] || status;
const isTerminal = (progress) => Boolean(progress && TERMINAL.has(progress.status));
// UUIDv7 ids start with a timestamp: their end tells tasks apart.
const shortId = (id) => id.slice(-8);
const taskUrl = (id, what) => `${API}/${encodeURIComponent(id)}${what ? `/${what}` : ''}`;
const link = (entry, name) => (entry.links && entry.links[name]) || taskUrl(entry.id, name === 'status' ? '' : name);

function humanBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = Number(n) || 0;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

async function problemText(response) {
  try {
    const body = await response.json();
    return [body.title, body.detail].filter(Boolean).join(': ') || `HTTP ${response.status}`;
  } catch (_) {
    return `HTTP ${response.status} ${response.statusText}`;
  }
}

function ensureTask(id, createdAt) {
  let entry = tasks.get(id);
  if (entry) return entry;
  const short = shortId(id);
  const badge = el('span', { class: 'badge', 'data-testid': `state-${id}`, 'aria-live': 'polite' });
  const fill = el('div', { class: 'fill' });
  const bar = el('div', {
    class: 'bar', role: 'progressbar', 'aria-label': `Progress of task ${short}`,
    'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': 0, 'data-testid': `progress-${id}`,
  }, fill);
  const nodes = {
    title: el('h3', { class: 'task-title', text: 'CreateZipFromFiles' }),
    meta: el('span', { class: 'task-meta' }),
    badge, bar, fill,
    pct: el('span', { class: 'pct', 'aria-hidden': 'true', text: '0 %' }),
    message: el('p', { class: 'task-message', 'data-testid': `message-${id}` }),
    error: el('p', { class: 'task-error', 'data-testid': `error-${id}` }),
    steps: el('ol', { class: 'steps', 'aria-label': `Steps of task ${short}` }),
    actions: el('div', { class: 'actions' }),
  };
  const root = el('li', { class: 'task', id: `task-${id}`, 'data-testid': `task-${id}` },
    el('div', { class: 'task-head' }, nodes.title, nodes.meta, badge),
    el('div', { class: 'progress' }, bar, nodes.pct),
    nodes.message, nodes.error, nodes.steps, nodes.actions);
  entry = { id, root, nodes, createdAt: createdAt || new Date().toISOString(), progress: null, links: null,
    name: null, result: null, source: null, actionsKey: '' };
  tasks.set(id, entry);
  insertByDate(entry);
  $('tasks-empty').hidden = true;
  $('task-count').textContent = `(${tasks.size})`;
  return entry;
}

function insertByDate(entry) {
  const list = $('tasks');
  for (const other of list.children) {
    const known = tasks.get(other.id.slice('task-'.length));
    if (known && known.createdAt < entry.createdAt) { list.insertBefore(entry.root, other); return; }
  }
  list.append(entry.root);
}

function update(progress) {
  if (!progress || !progress.taskId) return;
  const entry = ensureTask(progress.taskId, progress.createdAt);
  const known = entry.progress ? Number(entry.progress.revision) : -Infinity;
  if (Number(progress.revision) < known) return;
  if (Number(progress.revision) === known && progress.status === entry.progress.status) return;
  if (progress.createdAt) entry.createdAt = progress.createdAt;
  entry.progress = progress;
  render(entry);
  if (isTerminal(progress)) {
    stopFollowing(entry);
    if (progress.status === 'completed' && !entry.result) loadResult(entry);
  } else {
    follow(entry);
  }
}

function render(entry) {
  const p = entry.progress;
  const { nodes } = entry;
  const pct = Math.max(0, Math.min(100, Math.round(p.status === 'completed' ? 100 : Number(p.percent) || 0)));
  entry.root.className = `task t-${p.status}`;
  nodes.badge.className = `badge s-${p.status}`;
  nodes.badge.textContent = label(p.status) + (p.cancelRequested && !isTerminal(p) ? ' (cancelling)' : '');
  nodes.bar.setAttribute('aria-valuenow', String(pct));
  nodes.bar.setAttribute('aria-valuetext', `${pct} %, ${label(p.status)}`);
  nodes.fill.style.width = `${pct}%`;
  nodes.pct.textContent = `${pct} %`;
  nodes.message.textContent = p.message && p.message !== p.status ? p.message : '';
  nodes.error.textContent = p.error || '';
  renderMeta(entry);
  renderSteps(entry);
  renderActions(entry);
}

function renderMeta(entry) {
  const when = new Date(entry.createdAt);
  const parts = [`#${shortId(entry.id)}`, Number.isNaN(when.getTime()) ? '' : when.toLocaleTimeString()];
  if (entry.result && entry.result.summary) parts.push(entry.result.summary, humanBytes(entry.result.size));
  else if (entry.result) parts.push(`${entry.result.entries} files`, humanBytes(entry.result.size));
  entry.nodes.meta.textContent = parts.filter(Boolean).join(' · ');
  const name = (entry.result && entry.result.fileName) || entry.name;
  if (name) entry.nodes.title.textContent = name;
}

function renderSteps(entry) {
  const items = (entry.progress.steps || []).map((step) => {
    const details = [label(step.status)];
    if (step.status === 'running' && typeof step.fraction === 'number') details.push(`${Math.round(step.fraction * 100)} %`);
    if (step.attempts > 1) details.push(`attempt ${step.attempts}`);
    const ranOn = step.worker ? `on ${step.worker}` : '';
    const title = [step.name, step.host, ...details, ranOn, step.message, step.error].filter(Boolean).join(' · ');
    return el('li', { class: `step s-${step.status}`, title, 'data-testid': `step-${entry.id}-${step.name}` },
      el('span', { class: 'dot', 'aria-hidden': 'true' }),
      el('span', { class: 'step-name', text: step.name }),
      el('span', { class: 'step-host', text: step.host ? `(${String(step.host).toLowerCase()})` : '' }),
      el('span', { class: 'step-status', text: details.join(', ') }));
  });
  entry.nodes.steps.replaceChildren(...items);
}

function renderActions(entry) {
  const p = entry.progress;
  const key = `${p.status}|${p.cancelRequested}|${p.cancellable}|${entry.result ? entry.result.fileName : ''}`;
  if (key === entry.actionsKey) return;
  entry.actionsKey = key;
  const actions = [];
  if (!isTerminal(p) && p.cancellable !== false) {
    actions.push(el('button', {
      type: 'button', class: 'danger', 'data-testid': `cancel-${entry.id}`, disabled: Boolean(p.cancelRequested),
      'aria-label': `Cancel task ${shortId(entry.id)}`, text: p.cancelRequested ? 'Cancelling…' : 'Cancel',
      onclick: () => cancel(entry),
    }));
  }
  if (p.status === 'completed') {
    const name = (entry.result && entry.result.fileName) || 'archive';
    actions.push(el('a', { class: 'button', href: link(entry, 'download'), download: entry.result ? name : true,
      'data-testid': `download-${entry.id}`, text: `Download ${name}` }));
  }
  entry.nodes.actions.replaceChildren(...actions);
}

async function cancel(entry) {
  const button = entry.nodes.actions.querySelector('button');
  if (button) { button.disabled = true; button.textContent = 'Cancelling…'; }
  try {
    const response = await fetch(link(entry, 'cancel') || taskUrl(entry.id), { method: 'DELETE' });
    if (!response.ok) entry.nodes.error.textContent = `Cannot cancel: ${await problemText(response)}`;
  } catch (error) {
    entry.nodes.error.textContent = `Cannot cancel: ${error.message}`;
  }
  entry.actionsKey = '';
  if (entry.progress) render(entry);
}

// A VideoTranscode response: its renditions (the download serves the
// tallest), shown as "720p, 1080p".
function videoResult(value) {
  const renditions = value.renditions || [];
  const tallest = renditions.reduce((best, r) => (!best || r.height > best.height ? r : best), null);
  return {
    fileName: tallest ? tallest.key.split('/').pop() : null,
    size: renditions.reduce((sum, r) => sum + r.size, 0),
    summary: renditions.map((r) => r.name).join(', ') || 'no rendition',
  };
}

async function loadResult(entry) {
  entry.result = { fileName: null };
  try {
    const response = await fetch(link(entry, 'result'));
    if (!response.ok) { entry.result = null; return; }
    const body = await response.json();
    const value = body && (body.fileName || body.renditions ? body : body.response || body.result || body);
    entry.result = value.renditions ? videoResult(value) : { fileName: value.fileName, size: value.size, entries: value.entries };
  } catch (_) {
    entry.result = null;
    return;
  }
  entry.actionsKey = '';
  render(entry);
}

function follow(entry) {
  if (isTerminal(entry.progress) || entry.source || waiting.has(entry.id)) return;
  if (streams >= MAX_STREAMS) { waiting.add(entry.id); return; }
  streams += 1;
  const source = new EventSource(link(entry, 'stream'));
  entry.source = source;
  source.addEventListener('progress', (event) => {
    try { update(JSON.parse(event.data)); } catch (error) { console.error('bad progress event', error); }
  });
  source.addEventListener('error', () => {
    // CONNECTING means the browser reconnects by itself (with Last-Event-ID).
    if (source.readyState === EventSource.CLOSED) { stopFollowing(entry); waiting.add(entry.id); }
  });
}

function stopFollowing(entry) {
  waiting.delete(entry.id);
  if (!entry.source) return;
  entry.source.close();
  entry.source = null;
  streams -= 1;
}

async function pollWaiting() {
  for (const id of [...waiting]) {
    const entry = tasks.get(id);
    if (!entry || isTerminal(entry.progress)) { waiting.delete(id); continue; }
    if (streams < MAX_STREAMS) { waiting.delete(id); follow(entry); continue; }
    try {
      const response = await fetch(link(entry, 'status'));
      if (response.ok) update(await response.json());
      else if (response.status === 404) waiting.delete(id);
    } catch (_) { /* the server may be restarting: try again on the next tick */ }
  }
}

async function refreshList() {
  try {
    const response = await fetch(`${API}?limit=50`);
    if (!response.ok) throw new Error(await problemText(response));
    const page = await response.json();
    for (const progress of [...(page.items || [])].reverse()) update(progress);
    $('list-error').textContent = '';
  } catch (error) {
    $('list-error').textContent = `Cannot load the task list: ${error.message}`;
  }
}

function addSubmitted(answer, name, taskName) {
  const entry = ensureTask(answer.taskId);
  entry.links = answer.links || null;
  entry.name = name || null;
  if (!entry.progress) {
    update({ taskId: answer.taskId, taskName, status: answer.status || 'pending', percent: 0,
      steps: [], cancellable: true, revision: -1, createdAt: entry.createdAt });
  }
  follow(entry);
}

refreshList();
setInterval(refreshList, LIST_MS);
setInterval(pollWaiting, POLL_MS);
