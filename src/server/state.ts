/**
 * The member's state machine as one object the parts share: the MVCC store, the lessor, the
 * membership, the alarms, the auth state and the watch hub. Installing a snapshot replaces the store and the lessor (the
 * backend is swapped), so parts read them through this holder, never keep their own reference.
 *
 * Ownership: the applier is the only writer (apply is deterministic); everything else reads.
 */
import type { MvccStore } from '../store/mvcc/index.js';
import type { Lessor } from '../store/lease/lessor.js';
import type { WatchHub } from '../store/watch/watch-hub.js';
import type { Membership } from './membership.js';
import { AlarmSet } from './alarms.js';
import { AUTH_META_PREFIX, AuthStore } from '../store/auth/index.js';

export class MemberState {
  #store: MvccStore;
  #lessor: Lessor;
  readonly membership: Membership;
  readonly watchHub: WatchHub;
  /** The replicated alarms (a cache of the store's `alarm/` meta records; see alarms.ts). */
  readonly alarms = new AlarmSet();
  /** The replicated auth state (records in the store's meta namespace); reloaded on snapshot install. */
  readonly auth: AuthStore;

  constructor(parts: { store: MvccStore; lessor: Lessor; membership: Membership; watchHub: WatchHub }) {
    this.#store = parts.store;
    this.#lessor = parts.lessor;
    this.membership = parts.membership;
    this.watchHub = parts.watchHub;
    this.alarms.load(parts.store.listMeta('alarm/'));
    this.auth = AuthStore.load(parts.store.listMeta(AUTH_META_PREFIX));
  }

  get store(): MvccStore { return this.#store; }
  get lessor(): Lessor { return this.#lessor; }

  /** After a snapshot install: the new backend and the lessor rebuilt from it. */
  replace(parts: { store: MvccStore; lessor: Lessor }): void {
    this.#store = parts.store;
    this.#lessor = parts.lessor;
    this.alarms.load(parts.store.listMeta('alarm/'));
    this.auth.reload(parts.store.listMeta(AUTH_META_PREFIX));
  }
}
