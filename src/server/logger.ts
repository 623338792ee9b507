/**
 * Structured logging: one JSON line per event through pino, with the member's name and hex id on
 * every line, and `term` / `index` fields where relevant. Events are named in `event` (a stable
 * kebab-case string) and `msg` carries the human sentence.
 *
 * Logging never stops the member. Lines go to stdout through one asynchronous sonic-boom
 * destination per process with a bounded buffer ({@link LOG_BUFFER_BYTES_MAX}): when whoever reads
 * stdout falls behind (a full pipe, a stalled log shipper), lines beyond the buffer are dropped
 * and counted, and a `log-lines-dropped` line reports how many once there is room. (A synchronous
 * destination blocked the whole event loop while the pipe was full: under a flood of slow-request
 * warnings a leader stopped heartbeating for 22 s and lost its leadership.) At exit what is
 * buffered is written, for at most {@link EXIT_FLUSH_MS}.
 */
import { pino, type DestinationStream, type Logger as PinoLogger } from 'pino';
import type { LogLevel } from './config.js';

export type Logger = PinoLogger;

/** Bytes of log lines held while stdout does not take them; beyond, lines are dropped. */
export const LOG_BUFFER_BYTES_MAX = 8 * 1024 * 1024;
/** How long the exit flush may wait for a slow stdout. */
export const EXIT_FLUSH_MS = 2000;
/** How often dropped lines are reported (at most). */
const DROP_REPORT_INTERVAL_MS = 5000;

interface SharedDestination {
  readonly stream: DestinationStream & NodeJS.EventEmitter & { flushSync(): void };
  dropped: number;
  /** The first logger made on it: it reports the dropped lines. */
  reporter: Logger | undefined;
}

let stdoutDestination: SharedDestination | undefined;

/** The process's stdout destination, made on first use. */
function sharedStdout(): SharedDestination {
  if (stdoutDestination !== undefined) return stdoutDestination;
  let exitDeadline = Number.POSITIVE_INFINITY;
  const stream = pino.destination({
    fd: 1,
    sync: false,
    minLength: 0,
    maxLength: LOG_BUFFER_BYTES_MAX,
    // A full pipe: asynchronously, try again later (sonic-boom waits 100 ms); at exit, give up
    // after the deadline instead of sleeping forever.
    retryEAGAIN: () => Date.now() < exitDeadline,
  }) as unknown as SharedDestination['stream'];
  const shared: SharedDestination = { stream, dropped: 0, reporter: undefined };
  stream.on('drop', () => { shared.dropped += 1; });
  const timer = setInterval(() => {
    if (shared.dropped === 0 || shared.reporter === undefined) return;
    const count = shared.dropped;
    shared.dropped = 0;
    shared.reporter.warn({ event: 'log-lines-dropped', count }, 'stdout did not keep up: log lines were dropped');
  }, DROP_REPORT_INTERVAL_MS);
  timer.unref();
  stream.on('error', () => {
    // stdout went away (EPIPE) or gave up at exit: nothing left to tell it.
  });
  // Prepended: pino's own exit hook flushes this destination too, and must find the deadline set.
  process.prependOnceListener('exit', () => {
    exitDeadline = Date.now() + EXIT_FLUSH_MS;
    try {
      stream.flushSync();
    } catch {
      // A reader that never took the lines within the deadline: they are lost.
    }
  });
  stdoutDestination = shared;
  return shared;
}

/** Creates a logger writing JSON lines to stdout (or `destination` in tests). */
export function createLogger(options: { name: string; memberIdHex?: string; level: LogLevel; destination?: NodeJS.WritableStream }): Logger {
  const base: Record<string, string> = { member: options.name };
  if (options.memberIdHex !== undefined) base.id = options.memberIdHex;
  const shared = options.destination === undefined ? sharedStdout() : undefined;
  const logger = pino(
    {
      level: options.level,
      base,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? shared?.stream,
  );
  if (shared !== undefined) shared.reporter ??= logger;
  return logger;
}
