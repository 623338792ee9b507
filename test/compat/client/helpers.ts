// Goal: small shared helpers for the client compatibility tests. Method: condition polling with
// a deadline (never fixed sleeps) and unique key prefixes per test.
import { randomBytes } from 'node:crypto';

/** Waits until `condition()` is truthy, polling every 20 ms; throws after `timeoutMs`. */
export async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A fresh key prefix so tests sharing a server do not see each other's keys. */
export function uniquePrefix(name: string): string {
  return `/t/${name}-${randomBytes(4).toString('hex')}/`;
}

/** Resolves or rejects like `promise`, or rejects after `timeoutMs`; the timer is always cleared. */
export async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out: ${what()}`)), timeoutMs)))]);
  } finally {
    clearTimeout(timer);
  }
}
