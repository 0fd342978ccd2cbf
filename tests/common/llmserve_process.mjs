// Starts the real llmserve binary on a free loopback port and waits until it is ready. Shared by
// the JavaScript tests (tests/e2e, tests/web); their runners copy it next to the test file.
import { execFileSync, spawn } from 'node:child_process';

// The server's own settings, as `serve --print-config` lists them ("NAME=value (source)"), so that
// none leaks into a test from the developer's shell, including settings added later.
function serverVariables() {
  const text = execFileSync(process.env.LLMSERVE_BINARY, ['serve', '--print-config'], {
    env: { PATH: process.env.PATH ?? '' }, encoding: 'utf8',
  });
  const names = text.split('\n').map((line) => line.split('=')[0]).filter((name) => /^[A-Z_]+$/.test(name));
  if (names.length === 0) throw new Error(`llmserve serve --print-config listed no settings:\n${text}`);
  return [...names, 'WEB_DIR'];
}

// Returns {process, port, url, output(), stop()}; `variables` adds or overrides server settings.
export async function startLlmserve(variables = {}) {
  const env = { ...process.env };
  for (const name of serverVariables()) delete env[name];
  Object.assign(env, {
    MODEL_NAME: process.env.LLMSERVE_MODEL_DIR, HOST: '127.0.0.1', PORT: '0', LOG_FORMAT: 'json',
    THREADS: '1', HF_HUB_OFFLINE: '1', SHUTDOWN_GRACE_S: '1',
  }, variables);
  const child = spawn(process.env.LLMSERVE_BINARY, ['serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (data) => { output += data; });
  child.stderr.on('data', (data) => { output += data; });
  const headers = variables.API_KEYS ? { Authorization: `Bearer ${variables.API_KEYS.split(',')[0]}` } : {};
  const deadline = Date.now() + 60_000;
  let port = 0;
  while (Date.now() < deadline && child.exitCode === null) {
    if (!port) {
      for (const line of output.split('\n')) {
        if (!line.startsWith('{')) continue;
        const entry = JSON.parse(line);
        if (entry.msg === 'listening') port = entry.port;
      }
    }
    if (port) {
      const ready = await fetch(`http://127.0.0.1:${port}/ready`, { headers }).catch(() => null);
      if (ready?.status === 200) {
        return {
          process: child, port, url: `http://127.0.0.1:${port}`, output: () => output,
          stop: () => stopProcess(child),
        };
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`llmserve did not become ready:\n${output}`);
}

// SIGTERM, then SIGKILL if it has not exited within 10 s; resolves with the exit code or signal.
export async function stopProcess(child) {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode ?? child.signalCode;
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  const result = await exited;
  clearTimeout(timer);
  return result;
}

// The sum of a Prometheus counter's samples whose labels contain every `labels` substring.
export async function metricSum(url, name, labels = [], headers = {}) {
  const text = await (await fetch(`${url}/metrics`, { headers })).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const [series, value] = [line.slice(0, line.lastIndexOf(' ')), line.slice(line.lastIndexOf(' ') + 1)];
    if (series !== name && !series.startsWith(`${name}{`)) continue;
    if (labels.every((label) => series.includes(label))) sum += Number(value);
  }
  return sum;
}
