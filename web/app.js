// The llmserve playground: plain browser JavaScript over the server's own API: GET /info, POST /generate
// (completion mode) and POST /v1/chat/completions (chat mode, when the model has a chat template).
'use strict';

const $ = (id) => document.getElementById(id);
const numericControls = [...document.querySelectorAll('#controls input[type=number]')];
const initialValues = new Map(numericControls.map((input) => [input.id, input.value]));
const keyStorage = 'llmserve-api-key';

let apiKey = sessionStorage.getItem(keyStorage) || '';
let serverDefaults = {};
let running = null;  // {controller} while a generation is in flight
let conversation = [];  // chat mode: the {role, content} turns so far, assistant replies included

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
  showChatAvailability(Boolean(model.chat_template));
  resetControls();
}

// Chat needs the model's chat template (or the server's CHAT_TEMPLATE setting); without one the tab says so.
function showChatAvailability(available) {
  $('mode-chat').disabled = !available;
  $('chat-note').textContent = available ? ''
    : 'Chat: this model has no chat template (start the server with CHAT_TEMPLATE=file.jinja).';
  if (!available && !$('chat').hidden) showMode('completion');
}

function showMode(mode) {
  const chat = mode === 'chat';
  $('compose').hidden = chat;
  $('chat').hidden = !chat;
  $('mode-completion').setAttribute('aria-selected', String(!chat));
  $('mode-chat').setAttribute('aria-selected', String(chat));
  clearError();
  $('stats').textContent = '';
  $(chat ? 'message' : 'prompt').focus();
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

// The controls' values under /generate's field names; values go as typed so that the server validates them.
function controlValues() {
  const values = {};
  for (const input of numericControls) {
    if (input.value === '') continue;
    values[input.id] = input.dataset.kind === 'int' ? parseInt(input.value, 10) : parseFloat(input.value);
  }
  const stops = $('stop_strings').value.split('\n').filter((s) => s.length > 0);
  if (stops.length) values.stop = stops;
  values.ignore_eos = $('ignore_eos').checked;
  return values;
}

function requestBody() {
  return { prompt: $('prompt').value, stream: $('stream').checked, ...controlValues(),
    do_sample: $('do_sample').checked };
}

// The chat API names a few controls as OpenAI does, always answers one choice here, and has no do_sample.
const chatFieldNames = { max_length: 'max_tokens', min_new_tokens: 'min_tokens', num_return_sequences: null };

function chatBody(messages) {
  const body = { messages, stream: $('stream').checked };
  if (body.stream) body.stream_options = { include_usage: true };
  for (const [field, value] of Object.entries(controlValues())) {
    const name = field in chatFieldNames ? chatFieldNames[field] : field;
    if (name) body[name] = value;
  }
  if (!$('do_sample').checked) body.temperature = 0;
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
  setRunning({ controller });
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
    setRunning(null);
  }
}

// One generation at a time, in either mode: its Start buttons off and its Stop buttons on while it runs.
function setRunning(state) {
  running = state;
  for (const id of ['generate', 'send']) $(id).disabled = Boolean(state);
  for (const id of ['stop', 'chat-stop']) $(id).disabled = !state;
}

// A transcript entry: the role, then the text (and, for replies, the reasoning and how the turn ended).
function appendTurn(role, text) {
  const turn = document.createElement('div');
  turn.className = `turn ${role}`;
  const label = document.createElement('div');
  label.className = 'role';
  label.textContent = role;
  const reasoning = document.createElement('div');
  reasoning.className = 'reasoning';
  reasoning.hidden = true;
  const content = document.createElement('div');
  content.className = 'content';
  content.textContent = text;
  turn.append(label, reasoning, content);
  $('transcript').appendChild(turn);
  $('transcript').scrollTop = $('transcript').scrollHeight;
  return turn;
}

function noteFinish(turn, text) {
  const note = document.createElement('div');
  note.className = 'finish';
  note.textContent = text;
  turn.appendChild(note);
}

// Sends the conversation plus the new message; the reply streams into the transcript. A failed request
// leaves the conversation as it was and the message in its box; a stopped reply stays, marked stopped.
async function sendMessage() {
  const text = $('message').value;
  if (running || text.trim() === '') return;
  clearError();
  $('stats').textContent = '';
  const messages = [];
  if ($('system-prompt').value.trim() !== '') messages.push({ role: 'system', content: $('system-prompt').value });
  messages.push(...conversation, { role: 'user', content: text });
  const body = chatBody(messages);
  const userTurn = appendTurn('user', text);
  const reply = appendTurn('assistant', '');
  const content = reply.querySelector('.content');
  const reasoning = reply.querySelector('.reasoning');
  const transcript = $('transcript');
  const addDelta = (delta) => {
    // Follow the reply as it grows unless the reader has scrolled up to an earlier turn.
    const following = transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 24;
    if (delta.reasoning_content) {
      reasoning.hidden = false;
      reasoning.textContent += delta.reasoning_content;
    }
    if (delta.content) content.textContent += delta.content;
    if (following) transcript.scrollTop = transcript.scrollHeight;
  };
  const controller = new AbortController();
  setRunning({ controller });
  const startedAt = performance.now();
  let pieces = 0;
  let finish = null;
  const keepTurn = () => {
    conversation.push({ role: 'user', content: text }, { role: 'assistant', content: content.textContent });
    $('message').value = '';
  };
  try {
    const response = await fetch('/v1/chat/completions', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...authHeaders() },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) {
      userTurn.remove();
      reply.remove();
      showError(response.status, await readError(response), response.headers.get('Retry-After'));
      return;
    }
    if (!body.stream) {
      const result = await response.json();
      addDelta(result.choices[0].message);
      finish = result.choices[0].finish_reason;
      showStats(result.usage.completion_tokens, startedAt, result);
    } else {
      await readEvents(response, (event) => {
        if (event.error) throw new Error(event.error.message);
        for (const choice of event.choices || []) {
          if (choice.delta && (choice.delta.content || choice.delta.reasoning_content)) pieces += 1;
          if (choice.delta) addDelta(choice.delta);
          if (choice.finish_reason) finish = choice.finish_reason;
        }
        showStats(pieces, startedAt, event.usage ? event : null);
      });
    }
    noteFinish(reply, finish || 'ended');
    keepTurn();
  } catch (err) {
    if (err.name === 'AbortError') {
      noteFinish(reply, 'stopped');
      $('stats').textContent += ' · stopped';
      keepTurn();
    } else {
      userTurn.remove();
      reply.remove();
      showError(0, String(err));
    }
  } finally {
    setRunning(null);
  }
}

function clearConversation() {
  if (running) running.controller.abort();
  conversation = [];
  $('transcript').textContent = '';
  $('stats').textContent = '';
  clearError();
}

$('generate').addEventListener('click', generate);
for (const id of ['stop', 'chat-stop']) $(id).addEventListener('click', () => running && running.controller.abort());
$('send').addEventListener('click', sendMessage);
$('clear-chat').addEventListener('click', clearConversation);
$('mode-completion').addEventListener('click', () => showMode('completion'));
$('mode-chat').addEventListener('click', () => showMode('chat'));
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
$('message').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) sendMessage();
});
loadInfo();
