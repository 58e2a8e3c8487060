// BullMQ's side of dtask-bench's peers section (src/peers/bullmq.rs starts
// it). One process holds the producer and a Worker, as dtask's case holds
// its host with workers in-process; the job is trivial (it returns its
// input). Defaults stay BullMQ's (completed jobs kept, no removeOnComplete).
//
//   node bench.mjs <redis-url> <n> <concurrency> bulk
//   node bench.mjs <redis-url> <n> <concurrency> window <in-flight>
//
// Prints one JSON line: {"completed": n, "elapsedMs": ..., "version": "..."}.
// The clock runs from the first add to the last completion; the queue's
// keys are removed afterwards (obliterate).
import { createRequire } from 'node:module';
import { randomUUID } from 'node:crypto';
import { Queue, Worker } from 'bullmq';

const [url, nText, concurrencyText, mode, windowText] = process.argv.slice(2);
const n = Number(nText);
const concurrency = Number(concurrencyText);
if (!url || !(n > 0) || !(concurrency > 0) || !['bulk', 'window'].includes(mode)) {
  console.error('usage: node bench.mjs <redis-url> <n> <concurrency> bulk|window [in-flight]');
  process.exit(2);
}
const inFlight = mode === 'window' ? Number(windowText) : n;
const version = createRequire(import.meta.url)('bullmq/package.json').version;

const connection = { url, maxRetriesPerRequest: null };
const name = `dtask-bench-bullmq-${randomUUID()}`;
const queue = new Queue(name, { connection });
// Completions seen, and the submitters waiting for one (window mode).
let completed = 0;
const waiting = new Map();
const early = new Set();
let allDone;
const finished = new Promise((resolve) => { allDone = resolve; });
const worker = new Worker(name, async (job) => job.data.n, { connection, concurrency, autorun: false });
worker.on('completed', (job) => {
  completed += 1;
  const wake = waiting.get(job.id);
  if (wake) {
    waiting.delete(job.id);
    wake();
  } else {
    early.add(job.id);
  }
  if (completed === n) allDone();
});
worker.on('failed', (job, error) => {
  console.error(`job ${job?.id} failed: ${error}`);
  process.exit(1);
});
await queue.waitUntilReady();
await worker.waitUntilReady();

const started = process.hrtime.bigint();
const running = worker.run();
if (mode === 'bulk') {
  // addBulk in chunks of 1000 (one MULTI each), as a bulk producer would.
  for (let from = 0; from < n; from += 1000) {
    const jobs = [];
    for (let i = from; i < Math.min(n, from + 1000); i += 1) jobs.push({ name: 'ping', data: { n: i } });
    await queue.addBulk(jobs);
  }
} else {
  // `inFlight` loops, each adding a job and waiting for its completion.
  let next = 0;
  const loop = async () => {
    while (next < n) {
      next += 1;
      const job = await queue.add('ping', { n: next });
      if (early.delete(job.id)) continue;
      await new Promise((resolve) => waiting.set(job.id, resolve));
    }
  };
  await Promise.all(Array.from({ length: inFlight }, loop));
}
await finished;
const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;

await worker.close();
await running;
await queue.obliterate({ force: true });
await queue.close();
console.log(JSON.stringify({ completed, elapsedMs, version }));
