// The playground page in headless Chromium against the real llmserve binary (with an API key, so that
// the page's key prompt is exercised too): streaming, parameters, stop, validation errors, screenshot; then the
// chat mode over /v1/chat/completions (the embedded model gets a plain chat template through CHAT_TEMPLATE).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startLlmserve, metricSum } from './llmserve_process.mjs';

const API_KEY = 'sk-playground-test';
const AUTH = { Authorization: `Bearer ${API_KEY}` };
const artifacts = process.env.PLAYGROUND_ARTIFACTS || process.cwd();

let server;
let browser;
let page;
let profile;

before(async () => {
  server = await startLlmserve({ API_KEYS: API_KEY, CHAT_TEMPLATE: process.env.PLAYGROUND_CHAT_TEMPLATE });
  profile = mkdtempSync(path.join(tmpdir(), 'llmserve-chromium-'));
  // A fresh profile (playwright passes it as --user-data-dir); the flags keep Chromium off the network.
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1200, height: 800 },
  });
  page = browser.pages()[0] ?? await browser.newPage();
  await page.goto(server.url + '/');
});

after(async () => {
  await browser?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  if (server) {
    const code = await server.stop();
    assert.equal(code, 0, `llmserve exited with ${code}:\n${server.output()}`);
  }
});

// Sets a control's value as a user would (the page reads the inputs when Generate is clicked).
async function setControl(id, value) {
  await page.fill(`#${id}`, String(value));
}

async function waitIdle() {
  await page.waitForFunction(() => !document.getElementById('generate').disabled, null, { timeout: 30_000 });
}

test('the page is served without a key and asks for one when the API answers 401', async () => {
  assert.equal(await page.title(), 'llmserve playground');
  await page.waitForSelector('#auth', { state: 'visible' });
  assert.match(await page.textContent('#error'), /401/);
  await page.fill('#api-key', API_KEY);
  await page.click('#save-key');
  await page.waitForFunction(() => document.getElementById('model-info').textContent.includes('·'));
  const info = await (await fetch(`${server.url}/info`, { headers: AUTH })).json();
  const line = await page.textContent('#model-info');
  assert.ok(line.includes(info.model.name), line);
  assert.ok(line.includes(info.device), line);
  assert.equal(await page.isVisible('#auth'), false);
  // Defaults and ranges come from /info.
  assert.equal(Number(await page.inputValue('#max_length')), info.defaults.max_length);
  assert.equal(Number(await page.inputValue('#temperature')), info.defaults.temperature);
  assert.equal(Number(await page.inputValue('#top_p')), info.defaults.top_p);
  assert.equal(await page.getAttribute('#max_length', 'max'), String(info.model.n_positions - 1));
  assert.equal(await page.getAttribute('#top_k', 'max'), String(info.model.vocab_size));
});

test('streamed text appears piece by piece, then the usage and tokens/s', async () => {
  // Record every state of the output while it streams.
  await page.evaluate(() => {
    window.outputStates = [];
    new MutationObserver(() => {
      const box = document.querySelector('.output .generated');
      if (box) window.outputStates.push(box.textContent);
    }).observe(document.getElementById('outputs'), { childList: true, subtree: true, characterData: true });
  });
  // Long enough (the model is fast) that the pieces cannot all arrive in one read.
  await page.fill('#prompt', 'The jury said');
  await setControl('max_length', 200);
  await setControl('seed', 7);
  await page.check('#ignore_eos');
  await page.click('#generate');
  await waitIdle();
  await page.waitForSelector('.output .finish');
  const states = await page.evaluate(() => window.outputStates);
  const final = await page.textContent('.output .generated');
  const growing = new Set(states.filter((s) => s.length > 0 && final.startsWith(s)));
  assert.ok(growing.size >= 3, `expected the text to grow in several steps, saw ${growing.size}`);
  const stats = await page.textContent('#stats');
  assert.match(stats, /completion 200 tokens/);
  assert.match(stats, /[\d.]+ tokens\/s/);
  // The streamed text is what the API returns for the same seed.
  const body = {
    prompt: 'The jury said', max_length: 200, seed: 7, ignore_eos: true,
    temperature: Number(await page.inputValue('#temperature')), top_p: Number(await page.inputValue('#top_p')),
  };
  const direct = await (await fetch(`${server.url}/generate`, {
    method: 'POST', headers: { ...AUTH, 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  })).json();
  assert.equal(final, direct.results[0].text);
  await page.screenshot({ path: path.join(artifacts, 'playground.png'), fullPage: true });
  await page.uncheck('#ignore_eos');
});

test('changed parameters reach the server', async () => {
  await setControl('max_length', 5);
  await setControl('temperature', 0);
  await setControl('num_return_sequences', 2);
  await page.fill('#seed', '');
  await page.click('#generate');
  await waitIdle();
  await page.waitForSelector('.output[data-index="1"] .finish');
  const finishes = await page.$$eval('.output .finish', (nodes) => nodes.map((n) => n.textContent));
  assert.equal(finishes.length, 2);
  for (const finish of finishes) assert.match(finish, /length, 5 tokens/);
  // Greedy decoding: both samples are the same text.
  const texts = await page.$$eval('.output .generated', (nodes) => nodes.map((n) => n.textContent));
  assert.equal(texts[0], texts[1]);
  assert.match(await page.textContent('#stats'), /completion 10 tokens/);
});

test('stop aborts a streaming generation and the server cancels it', async () => {
  const disconnectsBefore = await metricSum(server.url, 'llmserve_client_disconnects_total', [], AUTH);
  await setControl('temperature', 1);
  await setControl('num_return_sequences', 16);
  await setControl('max_length', 500);
  await page.fill('#prompt', '');
  await page.check('#ignore_eos');
  await page.click('#generate');
  await page.waitForFunction(() => (document.querySelector('.output .generated')?.textContent.length || 0) > 0);
  await page.click('#stop');
  await waitIdle();
  assert.match(await page.textContent('#stats'), /stopped/);
  assert.equal(await page.$('.output .finish'), null, 'the generation finished before it could be stopped');
  const stoppedText = await page.textContent('.output .generated');
  await page.waitForTimeout(300);
  assert.equal(await page.textContent('.output .generated'), stoppedText, 'output kept growing after stop');
  const deadline = Date.now() + 10_000;
  let disconnects = disconnectsBefore;
  while (Date.now() < deadline && disconnects <= disconnectsBefore) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    disconnects = await metricSum(server.url, 'llmserve_client_disconnects_total', [], AUTH);
  }
  assert.ok(disconnects > disconnectsBefore, 'the server did not count the disconnect');
  await page.uncheck('#ignore_eos');
  await page.click('#reset');
});

test('a value out of range shows the server\'s validation error', async () => {
  await setControl('temperature', 500);
  await page.click('#generate');
  await waitIdle();
  await page.waitForSelector('#error', { state: 'visible' });
  const error = await page.textContent('#error');
  assert.match(error, /HTTP 422/);
  assert.match(error, /temperature/);
  assert.equal(await page.$('.output'), null);
});

// The bodies the page sends to the chat API, to check what each turn carries.
const chatBodies = [];

async function chatDirect(body) {
  const response = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST', headers: { ...AUTH, 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  assert.equal(response.status, 200, await response.clone().text());
  return (await response.json()).choices[0].message.content;
}

async function sendAndWait(text) {
  const before = (await page.$$('.turn.assistant .finish')).length;
  await page.fill('#message', text);
  await page.click('#send');
  await waitIdle();
  await page.waitForFunction((n) => document.querySelectorAll('.turn.assistant .finish').length > n, before);
}

test('chat mode: a streamed conversation carries its turns, and each reply is what the API answers', async () => {
  page.on('request', (request) => {
    if (request.url().endsWith('/v1/chat/completions')) chatBodies.push(JSON.parse(request.postData()));
  });
  await page.click('#reset');
  assert.equal(await page.isDisabled('#mode-chat'), false);
  await page.click('#mode-chat');
  assert.equal(await page.isVisible('#chat'), true);
  assert.equal(await page.isVisible('#compose'), false);
  await setControl('temperature', 0);  // greedy, so that the page's replies can be compared with direct requests
  await setControl('max_length', 12);
  await page.fill('#system-prompt', 'You answer briefly.');

  await sendAndWait('Where did the jury go?');
  const first = await page.textContent('.turn.assistant .content');
  assert.ok(first.length > 0, 'the first reply is empty');
  assert.equal(await page.inputValue('#message'), '', 'the sent message stays in its box');
  assert.match(await page.textContent('#stats'), /completion \d+ tokens/);
  const firstBody = chatBodies.at(-1);
  assert.equal(firstBody.stream, true);
  assert.equal(firstBody.max_tokens, 12);
  assert.equal(firstBody.temperature, 0);
  assert.deepEqual(firstBody.messages, [
    { role: 'system', content: 'You answer briefly.' },
    { role: 'user', content: 'Where did the jury go?' },
  ]);
  const { stream: _stream, stream_options: _options, ...plain } = firstBody;
  assert.equal(first, await chatDirect({ ...plain, stream: false }), 'the streamed reply differs from the API\'s');

  await sendAndWait('And then?');
  const secondBody = chatBodies.at(-1);
  assert.deepEqual(secondBody.messages, [
    { role: 'system', content: 'You answer briefly.' },
    { role: 'user', content: 'Where did the jury go?' },
    { role: 'assistant', content: first },
    { role: 'user', content: 'And then?' },
  ]);
  const roles = await page.$$eval('.turn .role', (nodes) => nodes.map((n) => n.textContent));
  assert.deepEqual(roles, ['user', 'assistant', 'user', 'assistant']);
  const replies = await page.$$eval('.turn.assistant .content', (nodes) => nodes.map((n) => n.textContent));
  const { stream: _s, stream_options: _o, ...secondPlain } = secondBody;
  assert.equal(replies[1], await chatDirect({ ...secondPlain, stream: false }));
  await page.screenshot({ path: path.join(artifacts, 'playground-chat.png'), fullPage: true });
});

test('chat mode: stop keeps the partial reply; an invalid value keeps the conversation and the message', async () => {
  await setControl('temperature', 1);
  await setControl('max_length', 400);  // the conversation so far plus 400 stays within the 512 positions
  await page.check('#ignore_eos');
  // The small model writes 400 tokens faster than a click lands on a fast machine: the browser reads the
  // stream at 2 KB/s meanwhile (about 20 s for the whole reply), so Stop always comes first.
  const network = await browser.newCDPSession(page);
  await network.send('Network.enable');
  await network.send('Network.emulateNetworkConditions',
    { offline: false, latency: 0, downloadThroughput: 2048, uploadThroughput: -1 });
  try {
    await page.fill('#message', 'Tell me everything.');
    await page.click('#send');
    await page.waitForFunction(() => {
      const replies = document.querySelectorAll('.turn.assistant .content');
      return !document.getElementById('error').hidden || (replies.length === 3 && replies[2].textContent.length > 0);
    });
    assert.equal(await page.isVisible('#error'), false, await page.textContent('#error'));
    await page.click('#chat-stop');
    await waitIdle();
  } finally {
    await network.send('Network.emulateNetworkConditions',
      { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await network.detach();
  }
  const finishes = await page.$$eval('.turn.assistant .finish', (nodes) => nodes.map((n) => n.textContent));
  assert.equal(finishes.at(-1), 'stopped');
  assert.match(await page.textContent('#stats'), /stopped/);
  await page.uncheck('#ignore_eos');

  const turnsBefore = (await page.$$('.turn')).length;
  await setControl('temperature', 500);
  await page.fill('#message', 'One more?');
  await page.click('#send');
  await waitIdle();
  await page.waitForSelector('#error', { state: 'visible' });
  const error = await page.textContent('#error');
  assert.match(error, /HTTP 400/);
  assert.match(error, /temperature/);
  assert.equal((await page.$$('.turn')).length, turnsBefore, 'the failed turn stayed in the transcript');
  assert.equal(await page.inputValue('#message'), 'One more?');
  // The stopped reply is part of the conversation the next request carries.
  await page.click('#reset');
  await setControl('max_length', 2);
  await sendAndWait('One more?');
  assert.equal(chatBodies.at(-1).messages.length, 1 + 2 * 3 + 1);

  await page.click('#clear-chat');
  assert.equal((await page.$$('.turn')).length, 0);
  await page.click('#mode-completion');
  assert.equal(await page.isVisible('#compose'), true);
});

test('without a chat template the chat mode is off and says how to give one', async () => {
  const plain = await startLlmserve();
  const other = await browser.newPage();
  try {
    await other.goto(plain.url + '/');
    await other.waitForFunction(() => document.getElementById('model-info').textContent.includes('·'));
    assert.equal(await other.isDisabled('#mode-chat'), true);
    assert.match(await other.textContent('#chat-note'), /no chat template.*CHAT_TEMPLATE/);
  } finally {
    await other.close();
    assert.equal(await plain.stop(), 0);
  }
});
