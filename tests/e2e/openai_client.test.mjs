// The official OpenAI Node client against llmserve's /v1 API: what a client of OpenAI expects.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startLlmserve } from './llmserve_process.mjs';

const API_KEY = 'sk-llmserve-test';
let server;
let client;
let modelId;

before(async () => {
  server = await startLlmserve({ API_KEYS: API_KEY });
  client = new OpenAI({ apiKey: API_KEY, baseURL: `${server.url}/v1`, maxRetries: 0 });
  const models = await client.models.list();
  modelId = models.data[0].id;
});

after(async () => {
  if (!server) return;
  const code = await server.stop();
  assert.equal(code, 0, `llmserve exited with ${code}:\n${server.output()}`);
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
