// The llmserve playground: plain browser JavaScript over the server's own API (GET /info, POST /generate).
'use strict';

const $ = (id) => document.getElementById(id);
const numericControls = [...document.querySelectorAll('#controls input[type=number]')];
const initialValues = new Map(numericControls.map((input) => [input.id, input.value]));
const keyStorage = 'llmserve-api-key';

let apiKey = sessionStorage.getItem(keyStorage) || '';
let serverDefaults = {};
let running = null;  // {controller} while a generation is in flight

function authHeaders() {
  return apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
}

// Shows an API error ({"error": {message, type, param, code}}) or a network failure.
function showError(status, body, retryAfter) {
  const box = $('error');
  const error = body && body.error ? body.error : null;
  let text = status ? `HTTP ${status}` : 'Request failed';
  if (error) {
    text += ` ${error.type || ''}${error.code ? ` (${error.code})` : ''}: ${error.message}`;
    if (error.param) text += `\nfield: ${error.param}`;
  } else if (typeof body === 'string' && body) {
    text += `: ${body}`;
  }
  if (status === 429) text += `\nRate limited: retry in ${retryAfter || 'a few'} s.`;
  if (status === 503 && retryAfter) text += `\nServer busy: retry in ${retryAfter} s.`;
  box.textContent = text;
  box.hidden = false;
  if (status === 401) askForKey();
}

function clearError() {
  $('error').hidden = true;
  $('error').textContent = '';
}

function askForKey() {
  $('auth').hidden = false;
  $('api-key').focus();
}

async function readError(response) {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

// Fills the model line and every control's default and range from GET /info.
async function loadInfo() {
  let response;
  try {
    response = await fetch('/info', { headers: authHeaders() });
  } catch (err) {
    $('model-info').textContent = 'server unreachable';
    showError(0, String(err));
    return;
  }
  if (!response.ok) {
    $('model-info').textContent = `GET /info failed (${response.status})`;
    showError(response.status, await readError(response), response.headers.get('Retry-After'));
    return;
  }
  clearError();
  const info = await response.json();
  const model = info.model || {};
  $('model-info').textContent =
    `${model.name} · ${info.device} · ${model.dtype} · context ${model.n_positions} · llmserve ${info.version}`;
  serverDefaults = info.defaults || {};
  const limits = info.limits || {};
  $('max_length').max = String(Math.max(0, (model.n_positions || 1) - 1));
  if (model.vocab_size) $('top_k').max = String(model.vocab_size);
  if (limits.max_samples_per_prompt) $('num_return_sequences').max = String(limits.max_samples_per_prompt);
  resetControls();
}

function resetControls() {
  for (const input of numericControls) {
    input.value = input.id in serverDefaults ? serverDefaults[input.id] : initialValues.get(input.id);
    labelRange(input);
  }
  $('do_sample').checked = true;
  $('ignore_eos').checked = false;
  $('stop_strings').value = '';
}

// Shows "default d, range [min, max]" under a control.
function labelRange(input) {
  let note = input.parentElement.querySelector('.range');
  if (!note) {
    note = document.createElement('div');
    note.className = 'range';
    input.parentElement.appendChild(note);
  }
  const fallback = input.id in serverDefaults ? serverDefaults[input.id] : initialValues.get(input.id);
  const range = `[${input.min || '−∞'}, ${input.max || '∞'}]`;
  note.textContent = `default ${fallback === '' ? 'none' : fallback}, range ${range}`;
}

// The request body from the form; values go as typed so that the server validates them.
function requestBody() {
  const body = { prompt: $('prompt').value, stream: $('stream').checked };
  for (const input of numericControls) {
    if (input.value === '') continue;
    body[input.id] = input.dataset.kind === 'int' ? parseInt(input.value, 10) : parseFloat(input.value);
  }
  const stops = $('stop_strings').value.split('\n').filter((s) => s.length > 0);
  if (stops.length) body.stop = stops;
  body.do_sample = $('do_sample').checked;
  body.ignore_eos = $('ignore_eos').checked;
  return body;
}

function outputBox(index) {
  let box = document.querySelector(`.output[data-index="${index}"]`);
  if (!box) {
    box = document.createElement('div');
    box.className = 'output';
    box.dataset.index = String(index);
    const generated = document.createElement('span');
    generated.className = 'generated';
    box.appendChild(generated);
    $('outputs').appendChild(box);
  }
  return box;
}

function showFinish(results) {
  for (const result of results || []) {
    const note = document.createElement('span');
    note.className = 'finish';
    note.textContent = `#${result.index}: ${result.finish_reason}, ${result.generated_tokens} tokens, seed ${result.seed}`;
    outputBox(result.index).appendChild(note);
  }
}

// Live figures while streaming; the server's own usage and timing once done.
function showStats(pieces, startedAt, final) {
  const seconds = (performance.now() - startedAt) / 1000;
  let text = `${pieces} pieces · ${seconds.toFixed(1)} s · ${(pieces / Math.max(seconds, 1e-3)).toFixed(1)} pieces/s`;
  if (final && final.usage) {
    const u = final.usage;
    text = `prompt ${u.prompt_tokens} tokens · completion ${u.completion_tokens} tokens · total ${u.total_tokens}`;
    if (final.timing) text += ` · ${final.timing.tokens_per_second.toFixed(1)} tokens/s`;
    text += ` · ${seconds.toFixed(2)} s`;
  }
  $('stats').textContent = text;
}

// Reads server-sent events ("data: {...}\n\n") and calls onEvent with each parsed payload.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffered = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffered.indexOf('\n\n')) >= 0) {
      const event = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      for (const line of event.split('\n')) {
        if (!line.startsWith('data: ')) continue;
        const data = line.slice(6);
        if (data === '[DONE]') return;
        onEvent(JSON.parse(data));
      }
    }
  }
}

async function generate() {
  if (running) return;
  clearError();
  $('outputs').textContent = '';
  $('stats').textContent = '';
  const body = requestBody();
  const controller = new AbortController();
  running = { controller };
  $('generate').disabled = true;
  $('stop').disabled = false;
  const startedAt = performance.now();
  let pieces = 0;
  try {
    const response = await fetch('/generate', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...authHeaders() },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) {
      showError(response.status, await readError(response), response.headers.get('Retry-After'));
      return;
    }
    if (!body.stream) {
      const result = await response.json();
      for (const r of result.results) outputBox(r.index).querySelector('.generated').textContent = r.text;
      showFinish(result.results);
      showStats(result.usage.completion_tokens, startedAt, result);
      return;
    }
    await readEvents(response, (event) => {
      if (event.done) {
        showFinish(event.results);
        showStats(pieces, startedAt, event);
      } else {
        pieces += 1;
        outputBox(event.index).querySelector('.generated').textContent += event.text;
        showStats(pieces, startedAt, null);
      }
    });
  } catch (err) {
    if (err.name === 'AbortError') {
      $('stats').textContent += ' · stopped';
    } else {
      showError(0, String(err));
    }
  } finally {
    running = null;
    $('generate').disabled = false;
    $('stop').disabled = true;
  }
}

$('generate').addEventListener('click', generate);
$('stop').addEventListener('click', () => running && running.controller.abort());
$('reset').addEventListener('click', resetControls);
$('save-key').addEventListener('click', () => {
  apiKey = $('api-key').value.trim();
  sessionStorage.setItem(keyStorage, apiKey);
  $('auth').hidden = true;
  loadInfo();
});
$('prompt').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) generate();
});
loadInfo();
