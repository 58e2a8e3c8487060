'use strict';
// The operations dashboard: every view reads the public JSON API only (so it
// is scoped and authorized as any client is) and refreshes itself while it
// is shown. Views: #/overview, #/tasks, #/task/{id}, #/dead-letters,
// #/workers. Elements carry stable data-testids for the browser test.

const TERMINAL = new Set(['completed', 'failed', 'compensated', 'cancelled', 'compensationFailed']);
const STATUSES = ['pending', 'running', 'queued', 'compensating', 'awaitingDependents', 'completed', 'failed', 'compensated', 'cancelled', 'compensationFailed'];
const REFRESH_MS = 2000;
const HOUR_MS = 3600 * 1000;
const OVERVIEW_PAGES = 10;

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
  for (const child of children) if (child !== null && child !== undefined && child !== false) node.append(child);
  return node;
}

const badge = (status, testid) => el('span', { class: `badge s-${status}`, 'data-testid': testid, text: status });
const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : '—');
const duration = (from, to) => {
  if (!from) return '—';
  const ms = (to ? new Date(to) : new Date()) - new Date(from);
  return ms < 1000 ? `${ms} ms` : ms < 120000 ? `${(ms / 1000).toFixed(1)} s` : `${(ms / 60000).toFixed(1)} min`;
};
const taskLink = (id) => el('a', { href: `#/task/${id}`, class: 'mono', text: id.slice(-12), title: id });

// --- the API, with the tab's credentials -----------------------------------

let credential = JSON.parse(sessionStorage.getItem('dtask-ops-credential') || 'null');

async function problemText(response) {
  try {
    const body = await response.json();
    return [body.title, body.detail].filter(Boolean).join(': ') || `HTTP ${response.status}`;
  } catch (_) {
    return `HTTP ${response.status} ${response.statusText}`;
  }
}

async function api(path, options = {}) {
  const headers = { Accept: 'application/json', ...(options.headers || {}) };
  if (credential && credential.kind === 'bearer') headers.Authorization = `Bearer ${credential.value}`;
  if (credential && credential.kind === 'key') headers['X-API-Key'] = credential.value;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    $('login').hidden = false;
    throw new Error('this API needs credentials (above)');
  }
  if (!response.ok) throw new Error(await problemText(response));
  return response.status === 204 ? null : response.json();
}

$('login-form').addEventListener('submit', (event) => {
  event.preventDefault();
  credential = { kind: $('login-kind').value, value: $('login-value').value.trim() };
  sessionStorage.setItem('dtask-ops-credential', JSON.stringify(credential));
  $('login').hidden = true;
  route();
});

// --- routing and refresh ----------------------------------------------------

let timer = null;
let generation = 0;

function route() {
  clearTimeout(timer);
  generation += 1;
  const mine = generation;
  const path = location.hash.replace(/^#\//, '').split('?')[0];
  const [view, arg] = (path || 'overview').split('/');
  for (const link of document.querySelectorAll('.tabs a')) {
    if (link.dataset.view === view) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const render = { overview, tasks: taskList, task: (m) => taskPage(arg, m), 'dead-letters': deadLetters, workers }[view] || overview;
  const tick = async () => {
    try {
      const again = await render(mine);
      if (mine === generation) $('error').textContent = '';
      if (mine === generation && again !== false) timer = setTimeout(tick, REFRESH_MS);
    } catch (error) {
      if (mine !== generation) return;
      $('error').textContent = error.message;
      timer = setTimeout(tick, REFRESH_MS * 2);
    }
  };
  $('view').replaceChildren(el('p', { class: 'muted', text: 'Loading…' }));
  tick();
}

window.addEventListener('hashchange', route);

function show(mine, ...nodes) {
  if (mine === generation) $('view').replaceChildren(...nodes);
}

// --- overview ---------------------------------------------------------------

// The tasks created in the last hour, newest first: pages of the list (from
// the task history when the server keeps one), up to OVERVIEW_PAGES pages.
async function lastHour() {
  const since = new Date(Date.now() - HOUR_MS).toISOString();
  const items = [];
  let query = `limit=200&createdAfter=${encodeURIComponent(since)}`;
  let page = await api(`/api/tasks?${query}`).catch(() => api('/api/tasks?limit=200'));
  for (let n = 0; n < OVERVIEW_PAGES; n += 1) {
    items.push(...page.items.filter((t) => Date.parse(t.createdAt) >= Date.now() - HOUR_MS));
    if (!page.nextCursor) break;
    page = await api(`/api/tasks?${query}&cursor=${encodeURIComponent(page.nextCursor)}`);
  }
  return items;
}

function chart(items) {
  // Ended tasks per 5-minute bucket over the hour: completed up, the
  // others (failed, compensated, cancelled) stacked in red.
  const buckets = Array.from({ length: 12 }, () => ({ ok: 0, bad: 0 }));
  const now = Date.now();
  for (const task of items) {
    if (!TERMINAL.has(task.status) || !task.completedAt) continue;
    const age = now - Date.parse(task.completedAt);
    const index = 11 - Math.floor(age / (5 * 60 * 1000));
    if (index < 0 || index > 11) continue;
    if (task.status === 'completed') buckets[index].ok += 1; else buckets[index].bad += 1;
  }
  const max = Math.max(1, ...buckets.map((b) => b.ok + b.bad));
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 360 120');
  svg.setAttribute('class', 'chart');
  svg.setAttribute('role', 'img');
  svg.setAttribute('data-testid', 'throughput-chart');
  svg.setAttribute('aria-label', `Tasks ended per 5 minutes over the last hour; most in one bucket: ${max}`);
  const rect = (x, y, h, cls) => {
    const r = document.createElementNS(ns, 'rect');
    Object.entries({ x, y, width: 24, height: Math.max(0, h), class: cls }).forEach(([k, v]) => r.setAttribute(k, v));
    svg.append(r);
  };
  buckets.forEach((b, i) => {
    const x = 8 + i * 29;
    const hOk = (b.ok / max) * 96;
    const hBad = (b.bad / max) * 96;
    rect(x, 100 - hOk, hOk, 'ok');
    rect(x, 100 - hOk - hBad, hBad, 'bad');
  });
  const axis = document.createElementNS(ns, 'line');
  Object.entries({ x1: 4, y1: 100.5, x2: 356, y2: 100.5, class: 'axis' }).forEach(([k, v]) => axis.setAttribute(k, v));
  svg.append(axis);
  [['−60 min', 8], ['−30 min', 170], ['now', 330]].forEach(([label, x]) => {
    const t = document.createElementNS(ns, 'text');
    t.setAttribute('x', x); t.setAttribute('y', 114); t.textContent = label;
    svg.append(t);
  });
  return svg;
}

async function overview(mine) {
  const [items, letters, workerList, queueList] = await Promise.all([
    lastHour(),
    api('/api/dead-letters?limit=100').catch(() => null),
    api('/api/workers').catch(() => null),
    api('/api/queues').catch(() => null),
  ]);
  const counts = Object.fromEntries(STATUSES.map((s) => [s, 0]));
  for (const task of items) counts[task.status] = (counts[task.status] || 0) + 1;
  const ended = items.filter((t) => TERMINAL.has(t.status));
  const failed = ended.filter((t) => t.status !== 'completed').length;
  const tiles = el('div', { class: 'tiles', 'data-testid': 'status-counts' },
    ...STATUSES.filter((s) => counts[s] > 0 || ['running', 'queued', 'completed', 'failed'].includes(s)).map((s) =>
      el('a', { class: 'tile', href: `#/tasks?status=${s}`, 'data-testid': `count-${s}` },
        el('div', { class: `n s-${s}`, text: String(counts[s]) }), el('div', { class: 'what', text: s }))));
  const byType = new Map();
  for (const task of items) {
    const row = byType.get(task.taskName) || { total: 0, running: 0, failed: 0 };
    row.total += 1;
    if (!TERMINAL.has(task.status)) row.running += 1;
    if (TERMINAL.has(task.status) && task.status !== 'completed') row.failed += 1;
    byType.set(task.taskName, row);
  }
  const types = el('table', { 'data-testid': 'task-types' },
    el('thead', {}, el('tr', {}, ...['Task type', 'Last hour', 'Live', 'Not completed'].map((h) => el('th', { text: h })))),
    el('tbody', {}, ...[...byType].map(([name, row]) => el('tr', {},
      el('td', {}, el('a', { href: `#/tasks?taskName=${encodeURIComponent(name)}`, text: name })),
      el('td', { class: 'num', text: String(row.total) }), el('td', { class: 'num', text: String(row.running) }),
      el('td', { class: 'num', text: String(row.failed) })))));
  // Each queue: its depth as the backend tells, and what the workers hold.
  const queues = new Map();
  for (const q of queueList ? queueList.items : []) queues.set(q.queue, { waiting: q.waiting, inFlight: q.inFlight, held: 0 });
  for (const w of workerList ? workerList.items : []) {
    for (const name of w.queues) {
      const q = queues.get(name) || { waiting: null, inFlight: null, held: 0 };
      q.held += w.inFlight;
      queues.set(name, q);
    }
  }
  const count = (n) => (n === null || n === undefined ? '—' : String(n));
  show(mine,
    el('section', { class: 'card' }, el('h2', { text: 'Last hour' }), tiles,
      el('p', { class: 'muted', 'data-testid': 'failure-rate',
        text: `${ended.length} ended, ${failed} not completed (failure rate ${ended.length ? ((100 * failed) / ended.length).toFixed(1) : '0.0'} %)` }),
      chart(items),
      el('div', { class: 'legend' }, el('span', { style: '--c: var(--ok)', text: 'completed' }), el('span', { style: '--c: var(--bad)', text: 'failed, compensated or cancelled' }))),
    el('section', { class: 'card' }, el('h2', { text: 'Task types' }), byType.size ? types : el('p', { class: 'muted', text: 'No task in the last hour.' })),
    el('section', { class: 'card' }, el('h2', { text: 'Queues and workers' }),
      el('p', {}, workerList ? `${workerList.items.length} worker(s) alive; ` : 'Workers are not listed for this caller; ',
        letters ? el('a', { href: '#/dead-letters', 'data-testid': 'dead-letter-count', text: `${letters.items.length} dead letter(s)` }) : 'dead letters not listed'),
      queues.size ? el('table', { 'data-testid': 'queues' },
        el('thead', {}, el('tr', {}, ...['Queue', 'Waiting', 'Delivered, unsettled', 'Held by workers'].map((h) => el('th', { text: h })))),
        el('tbody', {}, ...[...queues].map(([name, q]) => el('tr', { 'data-testid': `queue-${name}` },
          el('td', { class: 'mono', text: name }), el('td', { class: 'num', text: count(q.waiting) }),
          el('td', { class: 'num', text: count(q.inFlight) }), el('td', { class: 'num', text: String(q.held) }))))) : null));
}

// --- the task list ------------------------------------------------------------

function hashQuery() {
  const query = location.hash.split('?')[1] || '';
  return new URLSearchParams(query);
}

async function taskList(mine) {
  const filters = hashQuery();
  const query = new URLSearchParams({ limit: '50' });
  for (const key of ['status', 'taskName', 'submitter']) if (filters.get(key)) query.set(key, filters.get(key));
  const page = await api(`/api/tasks?${query}`);
  const form = el('form', { class: 'row', 'data-testid': 'task-filters', onsubmit: (event) => {
    event.preventDefault();
    const data = new FormData(event.target);
    const next = new URLSearchParams();
    for (const [key, value] of data) if (value) next.set(key, value);
    location.hash = `#/tasks?${next}`;
  } },
  el('select', { name: 'status', 'aria-label': 'Status' }, el('option', { value: '', text: 'any status' }),
    ...STATUSES.map((s) => el('option', { value: s, text: s, selected: filters.get('status') === s }))),
  el('input', { name: 'taskName', placeholder: 'task type', value: filters.get('taskName') || '', 'aria-label': 'Task type' }),
  el('input', { name: 'submitter', placeholder: 'submitter', value: filters.get('submitter') || '', 'aria-label': 'Submitter' }),
  el('button', { type: 'submit', text: 'Filter' }));
  const rows = page.items.map((t) => el('tr', { 'data-testid': `task-row-${t.taskId}` },
    el('td', {}, taskLink(t.taskId)), el('td', { text: t.taskName }), el('td', {}, badge(t.status, `task-status-${t.taskId}`)),
    el('td', { class: 'num', text: `${Math.round(t.percent)} %` }), el('td', { text: t.currentStep || '' }),
    el('td', { text: t.submitter || '' }), el('td', { text: time(t.createdAt) }),
    el('td', { class: 'err', text: t.error || '' })));
  show(mine, el('section', { class: 'card' }, el('h2', { text: 'Tasks' }), form,
    el('table', { 'data-testid': 'task-table' },
      el('thead', {}, el('tr', {}, ...['Task', 'Type', 'Status', 'Done', 'Step', 'Submitter', 'Created', 'Error'].map((h) => el('th', { text: h })))),
      el('tbody', {}, ...rows)),
    page.items.length ? null : el('p', { class: 'muted', text: 'No task matches.' })));
}

// --- one task: its timeline -----------------------------------------------------

function timeline(detail, progress) {
  const attempts = detail ? detail.attempts : progress.steps.filter((s) => s.startedAt).map((s) => ({
    step: s.name, kind: 'run', attempt: s.attempts, worker: '', startedAt: s.startedAt,
    endedAt: s.finishedAt || null, outcome: s.status === 'completed' ? 'succeeded' : s.status === 'failed' ? 'failed' : null, error: s.error,
  }));
  const starts = attempts.map((a) => Date.parse(a.startedAt)).filter(Number.isFinite);
  const from = Math.min(Date.parse(progress.createdAt), ...starts);
  const to = Math.max(Date.now() * (TERMINAL.has(progress.status) ? 0 : 1), Date.parse(progress.completedAt || 0),
    ...attempts.map((a) => Date.parse(a.endedAt || 0)), from + 1);
  const span = Math.max(1, to - from);
  const lanes = [];
  for (const step of progress.steps) {
    for (const kind of ['run', 'compensation']) {
      const mine = attempts.filter((a) => a.step === step.name && a.kind === kind);
      if (!mine.length && kind === 'compensation') continue;
      const label = kind === 'run' ? step.name : `${step.name} (compensation)`;
      const bars = mine.map((a) => {
        const start = Date.parse(a.startedAt);
        const end = a.endedAt ? Date.parse(a.endedAt) : Date.now();
        const cls = ['attempt', a.outcome || 'open', kind === 'compensation' ? 'compensation' : ''].join(' ');
        const title = `${label}, attempt ${a.attempt}: ${a.outcome || 'running'} in ${duration(a.startedAt, a.endedAt)}${a.worker ? ` on ${a.worker}` : ''}${a.error ? ` — ${a.error}` : ''}`;
        return el('div', { class: cls, title, 'data-testid': `attempt-${step.name}-${kind}-${a.attempt}`,
          style: `left: ${(100 * (start - from)) / span}%; width: ${(100 * (end - start)) / span}%` });
      });
      lanes.push(el('div', { class: 'label' }, label, ' ', badge(kind === 'run' ? step.status : 'compensation', `step-status-${step.name}-${kind}`)),
        el('div', { class: 'lane' }, ...bars));
    }
  }
  return el('div', {}, el('div', { class: 'gantt', 'data-testid': 'timeline' }, ...lanes),
    el('div', { class: 'legend' }, el('span', { style: '--c: var(--ok)', text: 'succeeded' }), el('span', { style: '--c: var(--bad)', text: 'failed' }),
      el('span', { style: '--c: var(--warn)', text: 'cancelled' }), el('span', { style: '--c: var(--info)', text: 'running' }),
      el('span', { class: 'muted', text: 'dashed outline: compensation' })));
}

async function taskPage(id, mine) {
  const progress = await api(`/api/tasks/${encodeURIComponent(id)}`);
  const detail = await api(`/api/tasks/${encodeURIComponent(id)}/history`).catch(() => null);
  const actions = el('div', { class: 'row' });
  if (progress.cancellable && !TERMINAL.has(progress.status)) {
    actions.append(el('button', { class: 'secondary', 'data-testid': 'cancel', text: 'Cancel', onclick: async () => {
      await api(`/api/tasks/${encodeURIComponent(id)}`, { method: 'DELETE' }).catch((e) => { $('error').textContent = e.message; });
    } }));
  }
  const facts = el('dl', { class: 'facts', 'data-testid': 'task-facts' },
    el('dt', { text: 'Task' }), el('dd', { class: 'mono', text: progress.taskId }),
    el('dt', { text: 'Type' }), el('dd', { text: progress.taskName }),
    el('dt', { text: 'Status' }), el('dd', {}, badge(progress.status, 'task-status')),
    el('dt', { text: 'Trace id' }), el('dd', { class: 'mono', 'data-testid': 'trace-id', text: progress.traceId || '—' }),
    el('dt', { text: 'Submitter' }), el('dd', { text: progress.submitter || '—' }),
    el('dt', { text: 'Created' }), el('dd', { text: `${new Date(progress.createdAt).toLocaleString()} (${duration(progress.createdAt, progress.completedAt)})` }),
    progress.error ? el('dt', { text: 'Error' }) : null, progress.error ? el('dd', { class: 'error', 'data-testid': 'task-error', text: progress.error }) : null);
  const attemptRows = (detail ? detail.attempts : []).map((a) => el('tr', {},
    el('td', { text: a.step }), el('td', { text: a.kind }), el('td', { class: 'num', text: String(a.attempt) }),
    el('td', { class: 'mono', text: a.worker }), el('td', { text: time(a.startedAt) }), el('td', { text: duration(a.startedAt, a.endedAt) }),
    el('td', {}, badge(a.outcome || 'running')), el('td', { class: 'err', text: a.error || '' })));
  const conditions = detail ? detail.conditions : progress.steps.filter((s) => s.condition).map((s) => ({ step: s.name, snapshot: s.condition }));
  const conditionRows = conditions.map((c) => el('tr', {},
    el('td', { text: c.step }), el('td', { class: 'mono', text: c.snapshot.expression }),
    el('td', { class: 'mono', text: (c.snapshot.observed || []).map((o) => `${o.path} = ${o.value}`).join(', ') }),
    el('td', {}, badge(c.snapshot.holds ? 'held' : 'skipped'))));
  const audit = (detail ? detail.audit : []).map((e) => el('tr', {},
    el('td', { text: time(e.at) }), el('td', { class: 'mono', text: e.actor }), el('td', { text: e.action }),
    el('td', { text: e.step || '' }), el('td', { text: [e.before, e.after].filter(Boolean).join(' → ') }), el('td', { text: e.detail || '' })));
  const table = (heads, rows, testid) => el('table', { 'data-testid': testid },
    el('thead', {}, el('tr', {}, ...heads.map((h) => el('th', { text: h })))), el('tbody', {}, ...rows));
  show(mine, el('section', { class: 'card' }, el('h2', { text: `Task ${progress.taskId.slice(-12)}` }), facts, actions,
    el('h3', { text: 'Timeline' }), timeline(detail, progress),
    attemptRows.length ? el('h3', { text: 'Attempts' }) : null,
    attemptRows.length ? table(['Step', 'Kind', 'Attempt', 'Worker', 'Started', 'Took', 'Outcome', 'Error'], attemptRows, 'attempts') : null,
    conditionRows.length ? el('h3', { text: 'Conditions' }) : null,
    conditionRows.length ? table(['Step', 'Condition', 'Saw', 'Result'], conditionRows, 'conditions') : null,
    audit.length ? el('h3', { text: 'Audit log' }) : null,
    audit.length ? table(['At', 'Actor', 'Action', 'Step', 'Change', 'Detail'], audit, 'audit') : null,
    detail ? null : el('p', { class: 'muted', text: 'This server keeps no task history: the timeline shows the last attempt of each step.' })));
  return !TERMINAL.has(progress.status);
}

// --- dead letters -------------------------------------------------------------

async function deadLetters(mine) {
  const page = await api('/api/dead-letters?limit=100');
  const rows = page.items.map((d) => el('tr', { 'data-testid': `dead-letter-${d.taskId}` },
    el('td', {}, d.taskId ? taskLink(d.taskId) : '—'), el('td', { text: d.taskName || '' }), el('td', { class: 'mono', text: d.queue }),
    el('td', { class: 'err', text: d.reason }), el('td', { class: 'num', text: String(d.deliveries) }),
    el('td', { text: (d.errors || []).map((e) => `${e.step} (${e.attempts}×): ${e.error}`).join('; ') }),
    el('td', {}, d.taskId ? el('button', { 'data-testid': `retry-${d.taskId}`, text: 'Retry', onclick: async (event) => {
      event.target.disabled = true;
      try {
        await api(`/api/tasks/${encodeURIComponent(d.taskId)}/retry`, { method: 'POST' });
        location.hash = `#/task/${d.taskId}`;
      } catch (error) {
        $('error').textContent = error.message;
        event.target.disabled = false;
      }
    } }) : null)));
  show(mine, el('section', { class: 'card' }, el('h2', { text: 'Dead letters' }),
    el('p', { class: 'muted', text: 'Messages the workers gave up on, with why; Retry replays a task from its last saved state.' }),
    rows.length ? el('table', { 'data-testid': 'dead-letters' },
      el('thead', {}, el('tr', {}, ...['Task', 'Type', 'Queue', 'Reason', 'Deliveries', 'Errors', ''].map((h) => el('th', { text: h })))),
      el('tbody', {}, ...rows)) : el('p', { 'data-testid': 'no-dead-letters', text: 'No dead letters.' })));
}

// --- workers ----------------------------------------------------------------------

async function workers(mine) {
  const page = await api('/api/workers');
  const rows = page.items.map((w) => el('tr', { 'data-testid': `worker-${w.id}` },
    el('td', { class: 'mono', text: w.id }), el('td', { text: w.host }), el('td', { class: 'num', text: String(w.pid) }),
    el('td', { text: w.version }), el('td', { class: 'mono', text: w.queues.join(', ') }),
    el('td', { class: 'num', text: `${w.inFlight} / ${w.concurrency}` }), el('td', { text: new Date(w.startedAt).toLocaleString() }),
    el('td', { text: `${duration(w.lastSeen)} ago` })));
  show(mine, el('section', { class: 'card' }, el('h2', { text: 'Workers' }),
    rows.length ? el('table', { 'data-testid': 'workers' },
      el('thead', {}, el('tr', {}, ...['Id', 'Host', 'Pid', 'Version', 'Queues', 'In flight', 'Started', 'Last heartbeat'].map((h) => el('th', { text: h })))),
      el('tbody', {}, ...rows)) : el('p', { class: 'muted', text: 'No worker has announced itself.' })));
}

route();
