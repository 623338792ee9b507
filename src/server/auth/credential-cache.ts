/**
 * Verified credentials, so that logging in again does not pay the password KDF again (kvd's
 * "cheap auth at scale"; etcd runs bcrypt for every Authenticate).
 *
 * After a password was verified against a user's stored hash, the cache remembers, under the
 * user's name and `credentialRevision` (the auth revision of its last add or password change),
 * an HMAC-SHA256 of the password under a random key of this process. A later login with the same
 * name and password matches that digest (timing-safe) without running the KDF. A password change
 * or a delete moves or removes the credential revision, so every cached entry of the user stops
 * matching at once; nothing has to be invalidated. The digest never leaves the process and its
 * key dies with it: the cache holds nothing a memory dump could turn into a password cheaply
 * (a 256-bit HMAC key is unknown), and it is not persisted.
 *
 * Concurrent logins with the same credentials share one KDF run (single flight): 10,000 clients
 * logging in as one user right after a leader change cost one verification. Failed
 * verifications are not cached (each costs a KDF run, bounded by passwords.ts).
 *
 * Bounds: at most {@link CREDENTIAL_CACHE_MAX} users' entries (least recently used evicted), at
 * most {@link INFLIGHT_MAX} distinct verifications in flight.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { KvdError } from '../../util/errors.js';

/** Cached credentials (one per user). */
export const CREDENTIAL_CACHE_MAX = 65_536;
/** Distinct verifications in flight at once. */
export const INFLIGHT_MAX = 4_096;

interface Entry {
  readonly credentialRevision: number;
  readonly digest: Buffer;
}

export class CredentialCache {
  readonly #key = randomBytes(32);
  /** name → entry; Map order is recency (oldest first). */
  readonly #entries = new Map<string, Entry>();
  readonly #inflight = new Map<string, Promise<boolean>>();
  hits = 0;
  misses = 0;

  #digest(password: string): Buffer {
    return createHmac('sha256', this.#key).update(password, 'utf8').digest();
  }

  /**
   * Whether `password` is the password of user `name` at `credentialRevision`: from the cache,
   * else by `verify` (the KDF), shared with concurrent identical attempts and remembered on success.
   */
  async check(name: string, credentialRevision: number, password: string, verify: () => Promise<boolean>): Promise<boolean> {
    const digest = this.#digest(password);
    const entry = this.#entries.get(name);
    if (entry !== undefined && entry.credentialRevision === credentialRevision && timingSafeEqual(entry.digest, digest)) {
      this.hits += 1;
      this.#entries.delete(name);
      this.#entries.set(name, entry);
      return true;
    }
    this.misses += 1;
    const flightKey = `${credentialRevision}\u0000${digest.toString('base64')}\u0000${name}`;
    let flight = this.#inflight.get(flightKey);
    if (flight === undefined) {
      if (this.#inflight.size >= INFLIGHT_MAX) throw new KvdError('too-many-requests');
      flight = verify().then((ok) => {
        if (ok) this.#remember(name, { credentialRevision, digest });
        return ok;
      });
      const started = flight;
      this.#inflight.set(flightKey, started);
      started.then(() => this.#inflight.delete(flightKey), () => this.#inflight.delete(flightKey));
    }
    return flight;
  }

  #remember(name: string, entry: Entry): void {
    this.#entries.delete(name);
    this.#entries.set(name, entry);
    if (this.#entries.size > CREDENTIAL_CACHE_MAX) {
      const oldest = this.#entries.keys().next();
      if (oldest.done !== true) this.#entries.delete(oldest.value);
    }
  }

  /** Entries held (tests). */
  get size(): number {
    return this.#entries.size;
  }
}
