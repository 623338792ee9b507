/**
 * Structured logging: one JSON line per event through pino, with the member's name and hex id on
 * every line, and `term` / `index` fields where relevant. Events are named in `event` (a stable
 * kebab-case string) and `msg` carries the human sentence.
 */
import { pino, type Logger as PinoLogger } from 'pino';
import type { LogLevel } from './config.js';

export type Logger = PinoLogger;

/** Creates the member's root logger writing JSON lines to stdout (or `destination` in tests). */
export function createLogger(options: { name: string; memberIdHex?: string; level: LogLevel; destination?: NodeJS.WritableStream }): Logger {
  const base: Record<string, string> = { member: options.name };
  if (options.memberIdHex !== undefined) base.id = options.memberIdHex;
  return pino(
    {
      level: options.level,
      base,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? pino.destination({ fd: 1, sync: true }),
  );
}
