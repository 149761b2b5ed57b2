// BullMQ peer for bench/queue. Started by the Go harness; not for humans.
//
//   node bullmq-driver.js produce <port> <queue> <n>
//       addBulk n no-op jobs (chunks of 1000, removeOnComplete), then exit.
//   node bullmq-driver.js consume <port> <queue> <n> <concurrency> [latency]
//       prints "ready", waits for "go" on stdin, runs a no-op Worker, prints
//       "done <wall_ns>" (and "lat <json µs>" in latency mode) after n jobs,
//       then waits for stdin to close and exits.
//   node bullmq-driver.js pace <port> <queue> <rate> <seconds>
//       adds rate jobs/s for seconds, each carrying its enqueue timestamp.
'use strict';
const { Queue, Worker } = require('bullmq');
const readline = require('readline');

const now = () => performance.timeOrigin + performance.now(); // ms, epoch
const [mode, port, qname, ...rest] = process.argv.slice(2);
const connection = { host: '127.0.0.1', port: Number(port), db: 0, maxRetriesPerRequest: null };
const jobOpts = { removeOnComplete: true };

async function produce(n) {
  const q = new Queue(qname, { connection });
  for (let i = 0; i < n; i += 1000) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + 1000); j++) batch.push({ name: 'noop', data: { i: j }, opts: jobOpts });
    await q.addBulk(batch);
  }
  await q.close();
}

async function pace(rate, seconds) {
  const q = new Queue(qname, { connection });
  await q.waitUntilReady();
  const total = rate * seconds;
  const t0 = now();
  let sent = 0;
  const pending = [];
  while (sent < total) {
    const due = Math.min(total, Math.floor(((now() - t0) / 1000) * rate) + 1);
    while (sent < due) {
      pending.push(q.add('noop', { ts: now() }, jobOpts));
      sent++;
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(pending);
  await q.close();
}

async function consume(n, concurrency, latency) {
  const lines = readline.createInterface({ input: process.stdin });
  const it = lines[Symbol.asyncIterator]();
  let count = 0;
  let t0 = 0n;
  const lats = latency ? [] : null;
  let finish;
  const finished = new Promise((r) => (finish = r));
  const worker = new Worker(
    qname,
    async (job) => {
      if (lats) lats.push(Math.round((now() - job.data.ts) * 1000));
      if (++count === n) finish(process.hrtime.bigint() - t0);
    },
    { connection, concurrency, autorun: false },
  );
  await worker.waitUntilReady();
  process.stdout.write('ready\n');
  await it.next(); // "go"
  t0 = process.hrtime.bigint();
  worker.run();
  const wall = await finished;
  process.stdout.write(`done ${wall}\n`);
  if (lats) process.stdout.write(`lat ${JSON.stringify(lats)}\n`);
  await it.next(); // stdin closed or "quit"
  await worker.close();
  process.exit(0);
}

(async () => {
  switch (mode) {
    case 'produce': await produce(Number(rest[0])); break;
    case 'pace': await pace(Number(rest[0]), Number(rest[1])); break;
    case 'consume': await consume(Number(rest[0]), Number(rest[1]), rest[2] === 'latency'); break;
    default: throw new Error(`unknown mode ${mode}`);
  }
})().catch((e) => { console.error(e); process.exit(1); });
