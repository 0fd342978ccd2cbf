// Bounded load test, run by hand against a running server (no dependencies beyond Node.js):
//   node tests/e2e/load_test.mjs --url http://127.0.0.1:8000 --duration 30 --concurrency 32 [--key K]
// Each client loops over a mix of requests (/generate plain and streamed, /v1/completions plain and
// streamed, /tokenize) until the time is up. Every response is checked; resident memory is sampled
// from /metrics once a second. Exits 1 on any 5xx, invalid response or transport error.
// The soak test (issue 17): --soak adds invalid requests (each must get a 4xx with our JSON error) and
// streams the client abandons after the first event, and fails unless resident memory over the last
// quarter of the run stays within 5% of its level after warm-up (--warmup seconds, default 60):
//   node tests/e2e/load_test.mjs --soak --duration 600 --concurrency 32
import { parseArgs } from 'node:util';

const { values: options } = parseArgs({
  options: {
    url: { type: 'string', default: 'http://127.0.0.1:8000' },
    duration: { type: 'string', default: '30' },
    concurrency: { type: 'string', default: '32' },
    'max-tokens': { type: 'string', default: '32' },
    key: { type: 'string' },
    soak: { type: 'boolean', default: false },
    warmup: { type: 'string', default: '60' },
  },
});
const durationMs = Number(options.duration) * 1000;
const concurrency = Number(options.concurrency);
const maxTokens = Number(options['max-tokens']);
const headers = { 'Content-Type': 'application/json' };
if (options.key) headers.Authorization = `Bearer ${options.key}`;

const PROMPTS = ['The jury said', 'It was a cold morning in', 'The committee reported that',
  'In the beginning', 'She looked at the'];

const stats = { requests: 0, byStatus: {}, invalid: 0, transport: 0, tokens: 0, latencies: [], ttfts: [],
  cancelled: 0, refused: 0 };

// Requests the server must refuse with a 4xx and our JSON error (the soak mix).
const INVALID = [
  ['/generate', '{"prompt": "x", "temperature": -1}'],
  ['/generate', '{"prompt": "x", "top_k": -1}'],
  ['/generate', '{"prompt": 5}'],
  ['/v1/completions', '{"prompt": "x", "top_p": 7}'],
  ['/v1/completions', '{"prompt": "x", "n": 100000}'],
  ['/generate', '{"prompt": "x"'],
  ['/generate', 'not json at all'],
];

async function invalidRequest(n) {
  const [path, body] = INVALID[n % INVALID.length];
  const response = await fetch(options.url + path, { method: 'POST', headers, body });
  const text = await response.text();
  stats.byStatus[response.status] = (stats.byStatus[response.status] ?? 0) + 1;
  if (response.status < 400 || response.status >= 500) throw new Error(`${path} ${body}: status ${response.status}`);
  if (typeof JSON.parse(text).error?.message !== 'string') throw new Error(`error without message: ${text}`);
  stats.refused += 1;
  return 0;
}

// A streamed generation the client abandons after its first bytes (the server must cancel it quietly).
async function abandonedStream(n) {
  const controller = new AbortController();
  const body = { prompt: PROMPTS[n % PROMPTS.length], max_length: 200, stream: true };
  const response = await fetch(options.url + '/generate',
    { method: 'POST', headers, body: JSON.stringify(body), signal: controller.signal });
  stats.byStatus[response.status] = (stats.byStatus[response.status] ?? 0) + 1;
  if (response.status !== 200) throw new Error(`abandoned stream: status ${response.status}`);
  const reader = response.body.getReader();
  await reader.read();
  controller.abort();
  stats.cancelled += 1;
  return 0;
}
const rssSamples = [];

function parseEvents(body) {
  const events = [];
  let done = false;
  for (const line of body.split('\n')) {
    if (!line) continue;
    if (!line.startsWith('data: ')) throw new Error(`bad SSE line: ${line}`);
    const payload = line.slice(6);
    if (payload === '[DONE]') { done = true; continue; }
    events.push(JSON.parse(payload));
  }
  if (!done) throw new Error('stream did not end with [DONE]');
  return events;
}

// One request of kind `n`; returns completion tokens, throws on an invalid response.
async function oneRequest(n) {
  const prompt = PROMPTS[n % PROMPTS.length];
  const kind = n % 5;
  const stream = kind === 1 || kind === 3;
  const path = kind <= 1 ? '/generate' : kind <= 3 ? '/v1/completions' : '/tokenize';
  const body = kind <= 1 ? { prompt, max_length: maxTokens, stream }
    : kind <= 3 ? { prompt, max_tokens: maxTokens, stream, stream_options: stream ? { include_usage: true } : undefined }
      : { prompt };
  const start = performance.now();
  const response = await fetch(options.url + path, { method: 'POST', headers, body: JSON.stringify(body) });
  let firstByte = null;
  let text = '';
  const decoder = new TextDecoder();
  for await (const chunk of response.body) {
    if (firstByte === null) firstByte = performance.now();
    text += decoder.decode(chunk, { stream: true });
  }
  const latency = performance.now() - start;
  stats.byStatus[response.status] = (stats.byStatus[response.status] ?? 0) + 1;
  if (response.status !== 200) {
    const error = JSON.parse(text).error;  // every error must be our JSON shape
    if (typeof error?.message !== 'string') throw new Error(`error without message: ${text}`);
    return 0;
  }
  stats.latencies.push(latency);
  if (stream) stats.ttfts.push(firstByte - start);
  if (path === '/tokenize') {
    const json = JSON.parse(text);
    if (json.count !== json.tokens.length) throw new Error('tokenize count mismatch');
    return 0;
  }
  if (path === '/generate') {
    const json = stream ? parseEvents(text).at(-1) : JSON.parse(text);
    if (!Array.isArray(json.results) || typeof json.results[0].text !== 'string') throw new Error('bad /generate');
    return json.usage.completion_tokens;
  }
  const json = stream ? parseEvents(text).at(-1) : JSON.parse(text);
  if (!stream && json.object !== 'text_completion') throw new Error('bad completion');
  return json.usage.completion_tokens;
}

async function client(id, deadline) {
  for (let n = id; performance.now() < deadline; n += concurrency) {
    stats.requests += 1;
    try {
      // Soak: of every 10 requests, 2 invalid and 1 abandoned stream.
      const slot = n % 10;
      const tokens = !options.soak || slot < 7 ? await oneRequest(n)
        : slot < 9 ? await invalidRequest(n) : await abandonedStream(n);  // (not `+= await`: that would lose concurrent updates)
      stats.tokens += tokens;
    } catch (error) {
      if (error.name === 'AbortError') continue;  // our own abort of an abandoned stream
      if (error instanceof TypeError) stats.transport += 1; else stats.invalid += 1;
      console.error(`client ${id}: ${error.message}`);
    }
  }
}

async function sampleRss() {
  const text = await (await fetch(`${options.url}/metrics`, { headers })).text();
  const line = text.split('\n').find((l) => l.startsWith('process_resident_memory_bytes '));
  if (line) rssSamples.push(Number(line.split(' ')[1]));
}

function percentile(values, p) {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

await sampleRss();
const start = performance.now();
const deadline = start + durationMs;
const sampler = setInterval(() => { sampleRss().catch(() => {}); }, 1000);
await Promise.all(Array.from({ length: concurrency }, (_, i) => client(i, deadline)));
clearInterval(sampler);
await sampleRss();
const seconds = (performance.now() - start) / 1000;
const mib = (bytes) => (bytes / 1048576).toFixed(1);
// Memory after warm-up (the mean of the 10 samples from --warmup s on) against the last quarter of the run.
const mean = (values) => values.reduce((a, b) => a + b, 0) / values.length;
const warmupIndex = Math.min(Number(options.warmup), Math.floor(rssSamples.length / 2));
const warmRss = mean(rssSamples.slice(warmupIndex, warmupIndex + 10));
const lateRss = mean(rssSamples.slice(Math.floor(rssSamples.length * 0.75)));
const rssGrowth = lateRss / warmRss - 1;
const memoryFlat = !options.soak || rssGrowth <= 0.05;
const serverErrors = Object.entries(stats.byStatus).filter(([s]) => Number(s) >= 500)
  .reduce((sum, [, count]) => sum + count, 0);
console.log(JSON.stringify({
  seconds: Number(seconds.toFixed(1)), concurrency, requests: stats.requests,
  requests_per_second: Number((stats.requests / seconds).toFixed(1)),
  generated_tokens_per_second: Number((stats.tokens / seconds).toFixed(1)),
  statuses: stats.byStatus, refused_as_expected: stats.refused, abandoned_streams: stats.cancelled,
  server_errors: serverErrors, invalid: stats.invalid, transport_errors: stats.transport,
  latency_ms: { p50: percentile(stats.latencies, 50), p95: percentile(stats.latencies, 95), p99: percentile(stats.latencies, 99) },
  stream_first_byte_ms: { p50: percentile(stats.ttfts, 50), p95: percentile(stats.ttfts, 95) },
  // Before any request, after the first 5 s (warm), the highest, and at the end.
  rss_mib: {
    idle: mib(rssSamples[0]), warm: mib(rssSamples[Math.min(5, rssSamples.length - 1)]),
    max: mib(Math.max(...rssSamples)), last: mib(rssSamples.at(-1)),
    after_warmup_mean: mib(warmRss), last_quarter_mean: mib(lateRss), growth_percent: rssGrowth * 100,
  },
}, (key, value) => (typeof value === 'number' && !Number.isInteger(value) ? Number(value.toFixed(1)) : value), 2));
if (!memoryFlat) console.error(`resident memory grew ${(rssGrowth * 100).toFixed(1)}% after warm-up (limit 5%)`);
process.exit(serverErrors === 0 && stats.invalid === 0 && stats.transport === 0 && memoryFlat ? 0 : 1);
