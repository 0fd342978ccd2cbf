// The official OpenAI Node client against llmserve's /v1 API: what a client of OpenAI expects.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import OpenAI from 'openai';

const API_KEY = 'sk-llmserve-test';
const SERVER_VARIABLES = [
  'MODEL_NAME', 'MAX_LENGTH', 'TEMPERATURE', 'TOP_P', 'HOST', 'PORT', 'API_KEYS',
  'AUTH_EXEMPT_PROBES', 'RATE_LIMIT_RPM', 'RATE_LIMIT_BURST', 'REQUEST_TIMEOUT_S',
  'MAX_CONCURRENT_REQUESTS', 'MAX_QUEUE', 'MAX_BODY_BYTES', 'CACHE_DIR', 'DEVICE', 'THREADS',
  'LOG_LEVEL', 'LOG_FORMAT', 'SHUTDOWN_GRACE_S',
];

let server;
let output = '';
let client;
let modelId;

async function startServer() {
  const env = { ...process.env };
  for (const name of SERVER_VARIABLES) delete env[name];
  Object.assign(env, {
    MODEL_NAME: process.env.LLMSERVE_MODEL_DIR, HOST: '127.0.0.1', PORT: '0', LOG_FORMAT: 'json',
    THREADS: '1', API_KEYS: API_KEY, HF_HUB_OFFLINE: '1',
  });
  server = spawn(process.env.LLMSERVE_BINARY, ['serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  server.stdout.on('data', (data) => { output += data; });
  server.stderr.on('data', (data) => { output += data; });
  const deadline = Date.now() + 60_000;
  let port = 0;
  while (Date.now() < deadline) {
    if (server.exitCode !== null) break;
    if (!port) {
      for (const line of output.split('\n')) {
        if (!line.startsWith('{')) continue;
        const entry = JSON.parse(line);
        if (entry.msg === 'listening') port = entry.port;
      }
    }
    if (port) {
      const ready = await fetch(`http://127.0.0.1:${port}/ready`, {
        headers: { Authorization: `Bearer ${API_KEY}` },
      }).catch(() => null);
      if (ready?.status === 200) return port;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`llmserve did not become ready:\n${output}`);
}

before(async () => {
  const port = await startServer();
  client = new OpenAI({ apiKey: API_KEY, baseURL: `http://127.0.0.1:${port}/v1`, maxRetries: 0 });
  const models = await client.models.list();
  modelId = models.data[0].id;
});

after(async () => {
  if (!server || server.exitCode !== null) return;
  const exited = new Promise((resolve) => server.once('exit', resolve));
  server.kill('SIGTERM');
  const code = await exited;
  assert.equal(code, 0, `llmserve exited with ${code}:\n${output}`);
});

test('models.list names the served model', async () => {
  const models = await client.models.list();
  assert.equal(models.data.length, 1);
  assert.equal(models.data[0].object, 'model');
  assert.equal(models.data[0].id, 'gpt2-brown-mini');
});

test('completions.create returns a text_completion with usage', async () => {
  const completion = await client.completions.create({
    model: modelId, prompt: 'The jury said', max_tokens: 12, temperature: 1, seed: 11,
  });
  assert.equal(completion.object, 'text_completion');
  assert.match(completion.id, /^cmpl-/);
  assert.equal(completion.model, modelId);
  assert.ok(Number.isInteger(completion.created));
  assert.equal(completion.choices.length, 1);
  const [choice] = completion.choices;
  assert.equal(choice.index, 0);
  assert.equal(typeof choice.text, 'string');
  assert.ok(['length', 'stop'].includes(choice.finish_reason));
  assert.equal(choice.logprobs, null);
  const { usage } = completion;
  assert.ok(usage.prompt_tokens > 0);
  assert.ok(usage.completion_tokens > 0 && usage.completion_tokens <= 12);
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
  if (choice.finish_reason === 'length') assert.equal(usage.completion_tokens, 12);
});

test('streaming yields chunks whose text adds up to the non-streamed completion', async () => {
  const request = { model: modelId, prompt: 'It was', max_tokens: 16, temperature: 1, seed: 21 };
  const whole = await client.completions.create(request);
  const stream = await client.completions.create({
    ...request, stream: true, stream_options: { include_usage: true },
  });
  let text = '';
  let finishReason = null;
  let usage = null;
  const ids = new Set();
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'text_completion');
    ids.add(chunk.id);
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices) {
      text += choice.text;
      if (choice.finish_reason) finishReason = choice.finish_reason;
    }
  }
  assert.equal(ids.size, 1);
  assert.equal(text, whole.choices[0].text);
  assert.equal(finishReason, whole.choices[0].finish_reason);
  assert.deepEqual(usage, whole.usage);
});

test('n and a list of prompts give prompt-major choices', async () => {
  const completion = await client.completions.create({
    model: modelId, prompt: ['One', 'Two'], n: 2, max_tokens: 3,
  });
  assert.deepEqual(completion.choices.map((c) => c.index), [0, 1, 2, 3]);
});

test('logprobs and echo come in the legacy completions shape', async () => {
  const completion = await client.completions.create({
    model: modelId, prompt: 'The jury', max_tokens: 4, logprobs: 2, echo: true, temperature: 0,
  });
  const [choice] = completion.choices;
  assert.ok(choice.text.startsWith('The jury'));
  const { tokens, token_logprobs: logprobs, top_logprobs: top, text_offset: offsets } = choice.logprobs;
  assert.equal(tokens.length, logprobs.length);
  assert.equal(tokens.length, offsets.length);
  assert.equal(logprobs[0], null);
  assert.equal(tokens.join(''), choice.text);
  assert.ok(Object.keys(top[top.length - 1]).length <= 2);
});

test('errors surface as the client error classes', async () => {
  const wrongKey = new OpenAI({ apiKey: 'sk-wrong', baseURL: client.baseURL, maxRetries: 0 });
  await assert.rejects(
    wrongKey.completions.create({ model: modelId, prompt: 'x' }),
    (error) => error instanceof OpenAI.AuthenticationError && error.status === 401);
  await assert.rejects(
    client.completions.create({ model: modelId, prompt: 'x', temperature: -1 }),
    (error) => error instanceof OpenAI.UnprocessableEntityError && error.param === 'temperature');
  await assert.rejects(
    client.completions.create({ model: 'no-such-model', prompt: 'x' }),
    (error) => error instanceof OpenAI.NotFoundError && error.param === 'model');
});
