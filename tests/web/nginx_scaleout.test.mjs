// deploy/nginx/llmserve.conf in front of two real llmserve replicas: nginx (started by the test with a
// generated config in a temporary folder) spreads requests over both, passes streams on, and keeps
// answering through the survivor when one replica is killed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startLlmserve, stopProcess, metricSum } from './llmserve_process.mjs';

const CONFIG = process.env.NGINX_CONFIG;
let replicas = [];
let nginx;
let nginxOutput = '';
let work;
let proxy;

async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

// The deployed configuration with the test's replicas and listening port, inside a minimal nginx.conf
// whose every path is in the temporary folder.
function nginxConfig(port) {
  let site = readFileSync(CONFIG, 'utf8');
  const servers = replicas.map((r) => `    server 127.0.0.1:${r.port} max_fails=2 fail_timeout=10s;`).join('\n');
  site = site.replace(/(upstream llmserve \{[^}]*?least_conn;[^\n]*\n)(\s*server [^\n]*\n)+/, `$1${servers}\n`);
  site = site.replace(/listen \d+;/, `listen 127.0.0.1:${port};`);
  assert.ok(site.includes(servers) && site.includes(`listen 127.0.0.1:${port};`), 'the config layout changed');
  return `error_log ${work}/error.log info;
events { worker_connections 256; }
http {
  access_log ${work}/access.log;
  client_body_temp_path ${work}/body; proxy_temp_path ${work}/proxy; fastcgi_temp_path ${work}/fastcgi;
  uwsgi_temp_path ${work}/uwsgi; scgi_temp_path ${work}/scgi;
${site}
}
`;
}

async function generate(body) {
  const response = await fetch(`${proxy}/generate`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

const generateCount = (replica) =>
  metricSum(replica.url, 'llmserve_http_requests_total', ['route="/generate"', 'code="200"']);

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'llmserve-nginx-'));
  chmodSync(work, 0o755);  // nginx's workers run as another user when the test runs as root
  replicas = await Promise.all([startLlmserve(), startLlmserve()]);
  const port = await freePort();
  writeFileSync(path.join(work, 'nginx.conf'), nginxConfig(port));
  nginx = spawn('nginx', ['-p', work, '-c', path.join(work, 'nginx.conf'), '-e', path.join(work, 'error.log'),
    '-g', `daemon off; pid ${work}/nginx.pid;`], { stdio: ['ignore', 'pipe', 'pipe'] });
  nginx.stdout.on('data', (d) => { nginxOutput += d; });
  nginx.stderr.on('data', (d) => { nginxOutput += d; });
  proxy = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    assert.equal(nginx.exitCode, null, `nginx exited:\n${nginxOutput}`);
    if ((await fetch(`${proxy}/ready`).catch(() => null))?.status === 200) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`nginx did not answer:\n${nginxOutput}\n${readFileSync(path.join(work, 'error.log'), 'utf8')}`);
});

after(async () => {
  if (nginx) await stopProcess(nginx);
  await Promise.all(replicas.map((r) => r.stop()));
  if (work) rmSync(work, { recursive: true, force: true });
});

test('the playground page is served through nginx', async () => {
  const response = await fetch(`${proxy}/`);
  assert.equal(response.status, 200);
  assert.match(await response.text(), /<title>llmserve playground<\/title>/);
});

test('concurrent requests are spread over both replicas', async () => {
  const before = await Promise.all(replicas.map(generateCount));
  const answers = await Promise.all(Array.from({ length: 16 }, (_, i) =>
    generate({ prompt: `Request ${i} says`, max_length: 24, seed: i })));
  for (const answer of answers) assert.equal(answer.status, 200, JSON.stringify(answer.body));
  const after = await Promise.all(replicas.map(generateCount));
  const served = after.map((count, i) => count - before[i]);
  assert.equal(served[0] + served[1], 16);
  assert.ok(served[0] > 0 && served[1] > 0, `one replica served nothing: ${served}`);
});

test('a stream passes through piece by piece', async () => {
  const response = await fetch(`${proxy}/generate`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: 'The jury said', max_length: 200, ignore_eos: true, seed: 3, stream: true }),
  });
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type'), /text\/event-stream/);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = '';
  let readsWithPieces = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    const chunk = decoder.decode(value, { stream: true });
    if (chunk.includes('"index"') && !chunk.includes('"done"')) readsWithPieces += 1;
    text += chunk;
  }
  assert.ok(text.trimEnd().endsWith('data: [DONE]'), text.slice(-200));
  const done = JSON.parse(text.split('\n\n').find((e) => e.startsWith('data: {"done"')).slice(6));
  assert.equal(done.usage.completion_tokens, 200);
  // 200 pieces: held back anywhere, they would arrive in a handful of reads.
  assert.ok(readsWithPieces >= 10, `the pieces arrived in only ${readsWithPieces} read(s): the stream was held back`);
});

test('requests keep succeeding through the survivor when a replica is killed', async () => {
  const [victim, survivor] = replicas;
  victim.process.kill('SIGKILL');
  await new Promise((resolve) => victim.process.once('exit', resolve));
  const before = await generateCount(survivor);
  const answers = [];
  for (let round = 0; round < 3; round += 1) {
    answers.push(...await Promise.all(Array.from({ length: 4 }, (_, i) =>
      generate({ prompt: 'After the failure', max_length: 8, seed: round * 4 + i }))));
  }
  for (const answer of answers) assert.equal(answer.status, 200, JSON.stringify(answer.body));
  assert.equal(await generateCount(survivor) - before, answers.length);
  assert.equal((await fetch(`${proxy}/ready`)).status, 200);
});
