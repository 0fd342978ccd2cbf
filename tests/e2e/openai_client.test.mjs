// The official OpenAI Node client against llmserve's /v1 API: what a client of OpenAI expects.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startLlmserve } from './llmserve_process.mjs';

const API_KEY = 'sk-llmserve-test';
let server;
let client;
let modelId;
// A Llama-family model with a chat template (tests/server/chat_fixture.h), for chat.completions.
let chatServer;
let chat;
let chatModel;

before(async () => {
  server = await startLlmserve({ API_KEYS: API_KEY });
  client = new OpenAI({ apiKey: API_KEY, baseURL: `${server.url}/v1`, maxRetries: 0 });
  const models = await client.models.list();
  modelId = models.data[0].id;
  chatServer = await startLlmserve({ MODEL_NAME: process.env.LLMSERVE_CHAT_MODEL_DIR });
  chat = new OpenAI({ apiKey: 'unused', baseURL: `${chatServer.url}/v1`, maxRetries: 0 });
  chatModel = (await chat.models.list()).data[0].id;
});

after(async () => {
  for (const running of [server, chatServer]) {
    if (!running) continue;
    const code = await running.stop();
    assert.equal(code, 0, `llmserve exited with ${code}:\n${running.output()}`);
  }
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
    (error) => error instanceof OpenAI.BadRequestError && error.param === 'temperature');
  await assert.rejects(
    client.completions.create({ model: 'no-such-model', prompt: 'x' }),
    (error) => error instanceof OpenAI.NotFoundError && error.param === 'model');
});

// --- chat.completions on a model with a chat template --------------------------------------------

const MESSAGES = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'hello there' },
];

async function tokenize(body) {
  const response = await fetch(`${chatServer.url}/tokenize`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  assert.equal(response.status, 200);
  return response.json();
}

// The engine's greedy text for the rendered chat prompt, through /v1/completions on its ids,
// ending at the template's end-of-turn token as chat does.
async function greedyReference(maxTokens) {
  const rendered = await tokenize({ messages: MESSAGES });
  const endOfTurn = (await tokenize({ prompt: '<pad>' })).tokens;  // chat_fixture.h's eos_token
  const completion = await chat.completions.create({
    model: chatModel, prompt: rendered.tokens, max_tokens: maxTokens, temperature: 0,
    stop_token_ids: endOfTurn,
  });
  return { rendered, choice: completion.choices[0] };
}

test('chat.completions.create answers with the engine\'s greedy text', async () => {
  const { rendered, choice: reference } = await greedyReference(8);
  const completion = await chat.chat.completions.create({
    model: chatModel, messages: MESSAGES, max_tokens: 8, temperature: 0,
  });
  assert.equal(completion.object, 'chat.completion');
  assert.match(completion.id, /^chatcmpl-/);
  assert.equal(completion.model, chatModel);
  assert.equal(completion.choices.length, 1);
  const [choice] = completion.choices;
  assert.equal(choice.message.role, 'assistant');
  assert.equal(choice.message.content, reference.text);
  assert.equal(choice.finish_reason, reference.finish_reason);
  assert.equal(completion.usage.prompt_tokens, rendered.count);
});

test('chat streaming: role first, content deltas, finish chunk, usage chunk', async () => {
  const request = { model: chatModel, messages: MESSAGES, max_completion_tokens: 8, temperature: 0 };
  const whole = await chat.chat.completions.create(request);
  const stream = await chat.chat.completions.create({
    ...request, stream: true, stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  assert.ok(chunks.length >= 3);
  for (const chunk of chunks) assert.equal(chunk.object, 'chat.completion.chunk');
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  const usage = chunks.at(-1);
  assert.deepEqual(usage.choices, []);
  assert.deepEqual(usage.usage, whole.usage);
  const finish = chunks.at(-2).choices[0];
  assert.equal(finish.finish_reason, whole.choices[0].finish_reason);
  const text = chunks.slice(0, -1).map((chunk) => chunk.choices[0].delta.content ?? '').join('');
  assert.equal(text, whole.choices[0].message.content);
});

test('chat with n > 1 gives indexed choices, reproducible with a seed', async () => {
  const request = {
    model: chatModel, messages: MESSAGES, n: 3, max_tokens: 5, temperature: 1, seed: 17,
  };
  const first = await chat.chat.completions.create(request);
  assert.deepEqual(first.choices.map((choice) => choice.index), [0, 1, 2]);
  const again = await chat.chat.completions.create(request);
  assert.deepEqual(again.choices.map((choice) => choice.message.content),
    first.choices.map((choice) => choice.message.content));
  assert.equal(first.usage.completion_tokens,
    again.usage.completion_tokens);
});

test('chat logprobs come in chat\'s shape and spell the content', async () => {
  const completion = await chat.chat.completions.create({
    model: chatModel, messages: MESSAGES, max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 2,
  });
  const [choice] = completion.choices;
  const { content } = choice.logprobs;
  assert.ok(content.length > 0);
  let bytes = [];
  for (const entry of content) {
    assert.equal(typeof entry.token, 'string');
    assert.ok(entry.logprob <= 0);
    assert.equal(entry.top_logprobs.length, 2);
    assert.ok(entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob);
    bytes = bytes.concat(entry.bytes);
  }
  assert.equal(Buffer.from(bytes).toString('utf8'), choice.message.content);
});

test('chat stop strings end the content before them', async () => {
  const { choice: reference } = await greedyReference(8);
  const text = reference.text;
  assert.ok(text.length >= 4, `greedy text too short to pick a stop string: ${JSON.stringify(text)}`);
  const stop = text.slice(2, 4);
  const completion = await chat.chat.completions.create({
    model: chatModel, messages: MESSAGES, max_tokens: 8, temperature: 0, stop: [stop],
  });
  assert.equal(completion.choices[0].message.content, text.slice(0, text.indexOf(stop)));
  assert.equal(completion.choices[0].finish_reason, 'stop');
});

test('a template\'s raise_exception surfaces as BadRequestError', async () => {
  await assert.rejects(
    chat.chat.completions.create({
      model: chatModel,
      messages: [{ role: 'user', content: 'hi' }, { role: 'system', content: 'late' }],
    }),
    (error) => error instanceof OpenAI.BadRequestError && error.status === 400 &&
      error.message.includes('the system message must come first'));
  await assert.rejects(
    chat.chat.completions.create({
      model: chatModel,
      messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }],
    }),
    (error) => error instanceof OpenAI.BadRequestError && error.message.includes('image_url'));
});

test('tool_choice required gives tool_calls the client reads, streamed the same', async () => {
  // The fixture's template writes calls as <tool_call> blocks, so the server reads them so.
  const request = {
    model: chatModel,
    messages: [{ role: 'user', content: 'ping?' }],
    tools: [{
      type: 'function',
      function: {
        name: 'ping',
        parameters: {
          type: 'object', properties: { loud: { type: 'boolean' } }, additionalProperties: false,
        },
      },
    }],
    tool_choice: 'required',
    parallel_tool_calls: false,
    temperature: 1,
    seed: 5,
  };
  const completion = await chat.chat.completions.create(request);
  const [choice] = completion.choices;
  assert.equal(choice.finish_reason, 'tool_calls');
  assert.equal(choice.message.content, null);
  assert.equal(choice.message.tool_calls.length, 1);
  const [call] = choice.message.tool_calls;
  assert.match(call.id, /^call_/);
  assert.equal(call.type, 'function');
  assert.equal(call.function.name, 'ping');
  const args = JSON.parse(call.function.arguments);
  for (const [key, value] of Object.entries(args)) {
    assert.equal(key, 'loud');
    assert.equal(typeof value, 'boolean');
  }

  const stream = await chat.chat.completions.create({ ...request, stream: true });
  const streamed = [];
  let finishReason = null;
  for await (const chunk of stream) {
    const [delta] = chunk.choices;
    for (const part of delta.delta.tool_calls ?? []) streamed[part.index] = part.function;
    finishReason = delta.finish_reason ?? finishReason;
  }
  assert.equal(finishReason, 'tool_calls');
  assert.deepEqual(streamed, [{ name: call.function.name, arguments: call.function.arguments }]);
});

const WEATHER_TOOLS = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      parameters: {
        type: 'object',
        properties: { city: { type: 'string', maxLength: 16 }, days: { type: 'integer', minimum: 1, maximum: 7 } },
        required: ['city', 'days'],
        additionalProperties: false,
      },
    },
  },
  {
    type: 'function',
    function: { name: 'get_time', parameters: { type: 'object', properties: {}, additionalProperties: false } },
  },
];

function checkWeatherArguments(text) {
  const args = JSON.parse(text);
  assert.deepEqual(Object.keys(args).sort(), ['city', 'days']);
  assert.equal(typeof args.city, 'string');
  assert.ok([...args.city].length <= 16, `city longer than maxLength: ${JSON.stringify(args.city)}`);
  assert.ok(Number.isInteger(args.days) && args.days >= 1 && args.days <= 7, `days: ${args.days}`);
}

test('a named tool_choice calls exactly that function, whatever the seed', async () => {
  for (const seed of [1, 2, 3]) {
    const completion = await chat.chat.completions.create({
      model: chatModel,
      messages: [{ role: 'user', content: 'Weather in Oslo for 3 days?' }],
      tools: WEATHER_TOOLS,
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      temperature: 1,
      seed,
    });
    const [choice] = completion.choices;
    assert.equal(choice.finish_reason, 'tool_calls', `seed ${seed}`);
    assert.ok(choice.message.tool_calls.length >= 1);
    for (const call of choice.message.tool_calls) {
      assert.equal(call.function.name, 'get_weather');
      checkWeatherArguments(call.function.arguments);
    }
  }
});

test('tool_choice auto answers either text or calls that parse, never an error', async () => {
  for (const seed of [1, 2, 3, 4]) {
    const completion = await chat.chat.completions.create({
      model: chatModel,
      messages: [{ role: 'user', content: 'Weather in Oslo?' }],
      tools: WEATHER_TOOLS,
      tool_choice: 'auto',
      max_tokens: 24,
      temperature: 1,
      seed,
    });
    const [choice] = completion.choices;
    if (choice.finish_reason === 'tool_calls') {
      for (const call of choice.message.tool_calls) {
        assert.ok(['get_weather', 'get_time'].includes(call.function.name));
        assert.equal(typeof JSON.parse(call.function.arguments), 'object');
      }
    } else {
      assert.ok(['stop', 'length'].includes(choice.finish_reason), choice.finish_reason);
      assert.equal(typeof choice.message.content, 'string');
      assert.equal(choice.message.tool_calls ?? undefined, undefined);
    }
  }
});

test('response_format json_schema gives content that parses and follows the schema', async () => {
  const schema = {
    type: 'object',
    properties: {
      name: { type: 'string', maxLength: 12 },
      age: { type: 'integer', minimum: 0, maximum: 150 },
      tags: { type: 'array', items: { enum: ['a', 'b'] }, maxItems: 3 },
    },
    required: ['name', 'age', 'tags'],
    additionalProperties: false,
  };
  for (const seed of [1, 2, 3]) {
    const completion = await chat.chat.completions.create({
      model: chatModel,
      messages: [{ role: 'user', content: 'A person, as JSON.' }],
      response_format: { type: 'json_schema', json_schema: { name: 'person', schema, strict: true } },
      max_tokens: 80,
      temperature: 1,
      seed,
    });
    const [choice] = completion.choices;
    assert.equal(choice.finish_reason, 'stop', `seed ${seed}: ${choice.message.content}`);
    const value = JSON.parse(choice.message.content);
    assert.deepEqual(Object.keys(value).sort(), ['age', 'name', 'tags']);
    assert.ok([...value.name].length <= 12);
    assert.ok(Number.isInteger(value.age) && value.age >= 0 && value.age <= 150);
    assert.ok(Array.isArray(value.tags) && value.tags.length <= 3);
    for (const tag of value.tags) assert.ok(['a', 'b'].includes(tag));
  }
});

test('response_format json_object on completions gives a JSON object', async () => {
  const completion = await client.completions.create({
    model: modelId, prompt: 'The record:', max_tokens: 120, temperature: 1, seed: 9,
    response_format: { type: 'json_object' },
  });
  const [choice] = completion.choices;
  if (choice.finish_reason === 'stop') {
    const value = JSON.parse(choice.text);
    assert.equal(typeof value, 'object');
    assert.ok(value !== null && !Array.isArray(value));
  } else {
    // Cut by max_tokens: still a prefix of an object.
    assert.equal(choice.finish_reason, 'length');
    assert.ok(choice.text.trimStart().startsWith('{'), choice.text);
  }
});
