// Resident memory of `llmserve serve` before, right after and a while after heavy requests
// (issue 17: memory must return after large responses). Starts the server itself on the embedded
// model, sends the requests all at once and reads VmRSS from /proc/<pid>/status. No dependencies
// beyond Node.js; Linux only.
//   node scripts/measure_rss.mjs [--binary build/llmserve] [--requests 8] [--prompts 32] [--n 2]
//                                [--max-tokens 400] [--logprobs 20] [--idle 5]
// The server inherits the environment (MALLOC_ARENA_MAX, MAX_RESPONSE_BYTES, THREADS, ...).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { parseArgs } from 'node:util';

const { values: options } = parseArgs({
  options: {
    binary: { type: 'string', default: 'build/llmserve' },
    model: { type: 'string', default: 'models/gpt2-brown-mini' },
    requests: { type: 'string', default: '8' },
    prompts: { type: 'string', default: '32' },
    n: { type: 'string', default: '2' },
    'max-tokens': { type: 'string', default: '400' },
    logprobs: { type: 'string', default: '20' },
    idle: { type: 'string', default: '5' },
  },
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A port nothing listens on (the kernel picks it; released before the server binds it).
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

function statusField(pid, field) {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith(field + ':'));
  if (!line) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(line.split(/\s+/)[1]) / 1024;  // kB -> MiB
}

const mib = (value) => `${value.toFixed(0)} MiB`;

// POSTs `body` and resolves to the status and body size. node:http rather than fetch, whose
// 300 s header timeout a heavy request on a small machine can pass.
function post(url, body) {
  return new Promise((resolve, reject) => {
    const outgoing = request(url, { method: 'POST', headers: { 'Content-Type': 'application/json' } }, (response) => {
      let bytes = 0;
      response.on('data', (chunk) => { bytes += chunk.length; });
      response.on('end', () => resolve({ status: response.statusCode, bytes }));
      response.on('error', reject);
    });
    outgoing.on('error', reject);
    outgoing.end(body);
  });
}

const port = await freePort();
const url = `http://127.0.0.1:${port}`;
const server = spawn(options.binary, ['serve'], {
  // Every prompt waits in the queue and none may time out: the figures are for complete answers.
  env: { REQUEST_TIMEOUT_S: '3600', MAX_QUEUE: '4096', ...process.env, MODEL_NAME: options.model,
    HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'error' },
  stdio: ['ignore', 'ignore', 'inherit'],
});
let exited = false;
server.on('exit', () => { exited = true; });

try {
  for (let waited = 0; ; waited += 100) {
    if (exited) throw new Error(`${options.binary} serve exited during start-up`);
    if (waited > 60_000) throw new Error('the server was not ready within 60 s');
    const ready = await fetch(url + '/ready').then((r) => r.ok, () => false);
    if (ready) break;
    await sleep(100);
  }
  const figures = { ready: statusField(server.pid, 'VmRSS') };

  const prompts = Array.from({ length: Number(options.prompts) }, (_, i) => `Story ${i}: The jury said`);
  const body = JSON.stringify({
    prompt: prompts, n: Number(options.n), max_tokens: Number(options['max-tokens']),
    logprobs: Number(options.logprobs), ignore_eos: true, temperature: 1,
  });
  const started = Date.now();
  const answers = await Promise.all(
    Array.from({ length: Number(options.requests) }, () => post(url + '/v1/completions', body)));
  const seconds = (Date.now() - started) / 1000;
  figures.after = statusField(server.pid, 'VmRSS');
  figures.peak = statusField(server.pid, 'VmHWM');
  await sleep(Number(options.idle) * 1000);
  figures.idle = statusField(server.pid, 'VmRSS');

  const statuses = [...new Set(answers.map((a) => a.status))].join(',');
  const largest = Math.max(...answers.map((a) => a.bytes));
  console.log(`${options.requests} requests x ${options.prompts} prompts x n=${options.n} x ` +
    `${options['max-tokens']} tokens, logprobs ${options.logprobs}: status ${statuses}, ` +
    `largest body ${(largest / 1048576).toFixed(1)} MiB, ${seconds.toFixed(1)} s`);
  console.log(`VmRSS ready ${mib(figures.ready)}, after the requests ${mib(figures.after)}, ` +
    `after ${options.idle} s idle ${mib(figures.idle)} (peak VmHWM ${mib(figures.peak)})`);
} finally {
  server.kill('SIGTERM');
}
