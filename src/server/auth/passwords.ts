/**
 * Password hashing and verification, off the event loop and bounded.
 *
 * kvd hashes with node:crypto scrypt (N = 2^14, r = 8, p = 1, 16-byte salt, 32-byte key): about
 * the cost of etcd's bcrypt at its default cost 10, and memory-hard. A bcrypt hash sent by a
 * client in `hashedPassword` (etcd 3.5+'s field: base64 of the hash) is stored as given and
 * verified with bcryptjs. Passwords are never stored, logged or put in the log (the proposing
 * member hashes before proposing, as etcd 3.5+ does).
 *
 * scrypt runs in libuv's thread pool (async); bcryptjs's async compare yields between rounds.
 * Both are expensive by design, so at most {@link KDF_CONCURRENCY_MAX} run at once and at most
 * {@link KDF_WAITING_MAX} wait; beyond that a request is refused with 'too-many-requests'
 * (repeated logins do not get here: see credential-cache.ts).
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import bcrypt from 'bcryptjs';
import type { PasswordHash } from '../../store/auth/auth-store.js';
import { KvdError } from '../../util/errors.js';

/** scrypt parameters of new hashes. */
export const SCRYPT_PARAMS = { n: 2 ** 14, r: 8, p: 1 } as const;
const SALT_BYTES = 16;
const KEY_BYTES = 32;
/** KDF runs at once (the thread pool has 4 threads by default). */
export const KDF_CONCURRENCY_MAX = 4;
/** KDF runs waiting for a slot; more are refused. */
export const KDF_WAITING_MAX = 1024;

let running = 0;
const waiting: Array<() => void> = [];

/** Runs `work` when a KDF slot is free; refuses when too many wait. */
async function withKdfSlot<T>(work: () => Promise<T>): Promise<T> {
  if (running >= KDF_CONCURRENCY_MAX) {
    if (waiting.length >= KDF_WAITING_MAX) throw new KvdError('too-many-requests');
    await new Promise<void>((resolve) => waiting.push(resolve));
  }
  running += 1;
  try {
    return await work();
  } finally {
    running -= 1;
    waiting.shift()?.();
  }
}

function scryptAsync(password: string, salt: Buffer, params: { n: number; r: number; p: number }): Promise<Buffer> {
  const options: ScryptOptions = { N: params.n, r: params.r, p: params.p, maxmem: 256 * params.n * params.r + 1024 * 1024 };
  return new Promise((resolve, reject) => scrypt(password, salt, KEY_BYTES, options, (error, key) => (error !== null ? reject(error) : resolve(key))));
}

/** Hashes a new password (scrypt, fresh salt). */
export function hashPassword(password: string): Promise<PasswordHash> {
  return withKdfSlot(async () => {
    const salt = randomBytes(SALT_BYTES);
    const key = await scryptAsync(password, salt, SCRYPT_PARAMS);
    return { scheme: 'scrypt', ...SCRYPT_PARAMS, salt: salt.toString('base64'), hash: key.toString('base64') };
  });
}

/** Bounds of scrypt parameters accepted from stored records (a corrupt record must not exhaust memory). */
const SCRYPT_N_MAX = 2 ** 20;

/** Whether `password` matches `stored`. Never throws for a mismatch. */
export function verifyPassword(stored: PasswordHash, password: string): Promise<boolean> {
  return withKdfSlot(async () => {
    if (stored.scheme === 'bcrypt') return bcrypt.compare(password, stored.hash);
    if (stored.n > SCRYPT_N_MAX || stored.r > 32 || stored.p > 16) return false;
    const expected = Buffer.from(stored.hash, 'base64');
    const key = await scryptAsync(password, Buffer.from(stored.salt, 'base64'), stored);
    return key.length === expected.length && timingSafeEqual(key, expected);
  });
}

/**
 * The stored form of etcd 3.5+'s `hashedPassword`: standard base64 of a bcrypt hash
 * ("$2a$", "$2b$" or "$2y$" with cost 4 to 31). Throws 'invalid-hashed-password' otherwise.
 */
export function bcryptFromHashedPassword(hashedPassword: string): PasswordHash {
  const hash = Buffer.from(hashedPassword, 'base64').toString('latin1');
  if (!/^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$/.test(hash)) throw new KvdError('invalid-hashed-password');
  return { scheme: 'bcrypt', hash };
}
