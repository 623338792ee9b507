/**
 * Logging never stops a member: with stdout a pipe nobody reads, a process logging a flood keeps
 * its event loop turning (lines beyond the bounded buffer are dropped) and exits within the
 * exit-flush deadline; slow-request warnings are limited per second and count what they left out.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { createLogger, EXIT_FLUSH_MS } from '../../../src/server/logger.js';
import { logSlowRequest, SLOW_REQUEST_LINES_PER_SECOND } from '../../../src/server/client-http.js';

const LOGGER_MODULE = fileURLToPath(new URL('../../../src/server/logger.js', import.meta.url));

test('a full stdout pipe neither blocks the event loop nor the exit', async () => {
  const child = spawn(process.execPath, ['--input-type=module', '-e', `
    const { createLogger } = await import(${JSON.stringify(LOGGER_MODULE)});
    const log = createLogger({ name: 'flood', level: 'info' });
    let ticks = 0;
    const ticker = setInterval(() => { ticks += 1; }, 10);
    const big = 'x'.repeat(1000);
    let lines = 0;
    const started = performance.now();
    while (performance.now() - started < 2000) {
      for (let i = 0; i < 200; i++) { log.info({ event: 'flood', i: lines, big }); lines += 1; }
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    clearInterval(ticker);
    process.send({ ticks, lines }, () => process.exit(0));
  `], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  // Nobody reads the child's stdout: the pipe fills and stays full.
  child.stdout?.pause();
  try {
    // Blocked on its stdout (the old synchronous destination), the child never gets here.
    const report = await new Promise<{ ticks: number; lines: number }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the logging process stopped answering (blocked on its stdout)')), 15_000);
      child.once('message', (message) => { clearTimeout(timer); resolve(message as { ticks: number; lines: number }); });
    });
    assert.ok(report.lines > 10_000, `it logged (${report.lines} lines)`);
    assert.ok(report.ticks > 0, 'its timers ran while it logged');
    await new Promise<void>((resolve, reject) => {
      if (child.exitCode !== null || child.signalCode !== null) {
        resolve();
        return;
      }
      const timer = setTimeout(() => reject(new Error('the process did not exit (exit flush blocked)')), EXIT_FLUSH_MS + 8000);
      child.once('exit', () => { clearTimeout(timer); resolve(); });
    });
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    child.stdout?.destroy();
  }
});

test('slow-request lines are limited per second and the next line says how many were left out', async () => {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({ write(chunk: Buffer, _encoding, done) { for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>); done(); } });
  const log = createLogger({ name: 'slow', level: 'info', destination: sink });
  const slow = { service: 'etcdserverpb.KV', method: 'Put', tookMs: 150, code: 'OK', trace: { startMs: 0 } };
  const second = 1_800_000_000_000;
  for (let i = 0; i < 100; i++) logSlowRequest(log, slow, second + i);
  logSlowRequest(log, slow, second + 1000);
  await new Promise((resolve) => setImmediate(resolve));
  const slowLines = lines.filter((line) => line.event === 'slow-request');
  assert.equal(slowLines.length, SLOW_REQUEST_LINES_PER_SECOND + 1);
  assert.equal(slowLines[SLOW_REQUEST_LINES_PER_SECOND].suppressed, 100 - SLOW_REQUEST_LINES_PER_SECOND);
  assert.equal(slowLines[0].suppressed, undefined);
});
