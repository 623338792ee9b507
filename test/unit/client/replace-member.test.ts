// Goal: replaceMember finishes a replacement however often it is interrupted, never repeats a
// membership write whose outcome it knows, and stays within its deadline; planReplacement
// decides each step from the membership alone and refuses what it cannot do safely.
// Method: a fake cluster implementing MembershipApi in memory (etcd's refusals and messages,
// learners that catch up as fake time passes, failures injected per call: refused before
// applying, or applied with the answer lost) and a fake clock whose sleeps advance time at
// once. Interruptions abort the run from its progress callback; a second run must resume.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  KvError,
  LearnerNotReadyError,
  MemberNotFoundError,
  MemberNotLearnerError,
  NotEnoughStartedMembersError,
  PeerUrlsExistError,
  ReplaceRefusedError,
  TimeoutError,
  CancelledError,
  TooManyLearnersError,
  UnavailableError,
  UnhealthyClusterError,
  planReplacement,
  replaceMember,
  startSettings,
  POLL_INTERVAL_MIN_MS,
  type Clock,
  type Member,
  type MemberAddRequest,
  type MemberAddResult,
  type MemberListResult,
  type MembershipApi,
  type ReplaceEvent,
  type ReplaceMemberOptions,
  type StatusResult,
} from '../../../src/client/index.js';

const CLUSTER_ID = 0xe67a3eb94da1e394n;
const HEADER = { clusterId: CLUSTER_ID, memberId: 1n, revision: 0n, raftTerm: 2n };

function member(id: bigint, name: string, port: number, options: { learner?: boolean; started?: boolean } = {}): Member {
  const started = options.started ?? true;
  return {
    id,
    name: started ? name : '',
    peerUrls: [`http://127.0.0.1:${port + 100}`],
    clientUrls: started ? [`http://127.0.0.1:${port}`] : [],
    isLearner: options.learner === true,
    autoPromote: false,
  };
}

type Method = 'memberList' | 'memberAdd' | 'memberRemove' | 'memberPromote' | 'status';

/** A failure armed for the next call of a method: refused before applying, or applied and lost. */
interface Fault {
  readonly error: Error;
  readonly apply: boolean;
}

/**
 * An in-memory cluster with etcd's membership rules: one learner at most, unique peer URLs,
 * promotion only of a started learner whose applied index reached the leader's index. The
 * leader's index is fixed; a started learner applies `catchUpPerSleep` entries per clock sleep.
 */
class FakeCluster implements MembershipApi {
  members: Member[];
  readonly calls: Record<Method, number> = { memberList: 0, memberAdd: 0, memberRemove: 0, memberPromote: 0, status: 0 };
  readonly faults = new Map<Method, Fault[]>();
  readonly applied = new Map<bigint, bigint>();
  leaderIndex = 100n;
  catchUpPerSleep = 40n;
  nextId = 0x8c339fbbdddba35n;
  /** Serve the membership from before the last write (a member that lags), this many times. */
  staleReads = 0;
  #before: Member[] = [];

  constructor(members: Member[]) {
    this.members = members;
    for (const one of members) this.applied.set(one.id, this.leaderIndex);
  }

  fail(method: Method, error: Error, options: { apply: boolean }): void {
    const list = this.faults.get(method) ?? [];
    list.push({ error, apply: options.apply });
    this.faults.set(method, list);
  }

  /** Runs a call: counts it, applies an armed fault (before or after `apply`). */
  #call<T>(method: Method, apply: () => T): T {
    this.calls[method] += 1;
    const fault = this.faults.get(method)?.shift();
    if (fault === undefined) return apply();
    if (fault.apply) apply();
    throw fault.error;
  }

  #write<T>(method: Method, apply: () => T): T {
    return this.#call(method, () => {
      this.#before = this.members.map((one) => ({ ...one }));
      return apply();
    });
  }

  /** The operator starts the new member: it reports name and client URLs, applied index 0. */
  start(id: bigint, name: string, clientPort: number): void {
    this.members = this.members.map((one) => (one.id === id ? { ...one, name, clientUrls: [`http://127.0.0.1:${clientPort}`] } : one));
    this.applied.set(id, 0n);
  }

  /** Time passes: started learners catch up. */
  tick(): void {
    for (const one of this.members) {
      if (one.name === '') continue;
      const applied = this.applied.get(one.id) ?? 0n;
      this.applied.set(one.id, applied + this.catchUpPerSleep > this.leaderIndex ? this.leaderIndex : applied + this.catchUpPerSleep);
    }
  }

  find(id: bigint): Member | undefined {
    return this.members.find((one) => one.id === id);
  }

  /** Whether each membership read asked for a linearizable answer. */
  readonly listReads: boolean[] = [];
  async memberList(options?: { linearizable?: boolean }): Promise<MemberListResult> {
    this.listReads.push(options?.linearizable === true);
    return this.#call('memberList', () => {
      if (this.staleReads > 0) {
        this.staleReads -= 1;
        return { header: HEADER, members: this.#before };
      }
      return { header: HEADER, members: this.members };
    });
  }

  async memberAdd(request: MemberAddRequest): Promise<MemberAddResult> {
    return this.#write('memberAdd', () => {
      if (this.members.some((one) => one.peerUrls.some((url) => request.peerUrls.includes(url)))) throw new PeerUrlsExistError('peer-url-exists', { grpcCode: 9 });
      if (request.isLearner === true && this.members.some((one) => one.isLearner)) throw new TooManyLearnersError('too-many-learners', { grpcCode: 9 });
      const added: Member = { id: this.nextId, name: '', peerUrls: [...request.peerUrls], clientUrls: [], isLearner: request.isLearner === true, autoPromote: false };
      this.nextId += 1n;
      this.members = [...this.members, added];
      return { header: HEADER, member: added, members: this.members };
    });
  }

  async memberRemove(id: bigint | string | number): Promise<MemberListResult> {
    return this.#write('memberRemove', () => {
      if (this.find(BigInt(id)) === undefined) throw new MemberNotFoundError('member-not-found', { grpcCode: 5 });
      this.members = this.members.filter((one) => one.id !== BigInt(id));
      return { header: HEADER, members: this.members };
    });
  }

  async memberPromote(id: bigint | string | number): Promise<MemberListResult> {
    return this.#write('memberPromote', () => {
      const target = this.find(BigInt(id));
      if (target === undefined) throw new MemberNotFoundError('member-not-found', { grpcCode: 5 });
      if (!target.isLearner) throw new MemberNotLearnerError('member-not-learner', { grpcCode: 9 });
      if (target.name === '' || (this.applied.get(target.id) ?? 0n) < this.leaderIndex) throw new LearnerNotReadyError('learner-not-ready', { grpcCode: 9 });
      this.members = this.members.map((one) => (one.id === target.id ? { ...one, isLearner: false } : one));
      return { header: HEADER, members: this.members };
    });
  }

  async status(endpoint: string): Promise<StatusResult> {
    return this.#call('status', () => {
      const target = this.members.find((one) => one.clientUrls.includes(endpoint));
      if (target === undefined) throw new UnavailableError('stopped', { detail: `cannot connect to ${endpoint}` });
      const leader = this.members[0];
      return {
        header: { ...HEADER, memberId: target.id },
        version: '3.4.23',
        dbSize: 0n,
        leader: leader.id,
        raftIndex: target.id === leader.id ? this.leaderIndex : (this.applied.get(target.id) ?? 0n),
        raftTerm: 2n,
        raftAppliedIndex: this.applied.get(target.id) ?? 0n,
        errors: [],
        dbSizeInUse: 0n,
        isLearner: target.isLearner,
      };
    });
  }
}

/** Fake time: sleeps return at once, advance the clock and let the cluster's learners catch up. */
function fakeClock(cluster: FakeCluster): Clock & { slept: number[] } {
  let now = 0;
  const slept: number[] = [];
  return {
    slept,
    now: () => now,
    sleep: async (ms) => {
      slept.push(ms);
      now += ms;
      cluster.tick();
    },
  };
}

const M1 = member(0x3671eef4554e13acn, 'm1', 2379);
const M2 = member(0x39c59be52217570cn, 'm2', 2479);
const M3 = member(0x20c9e08e21ae99c9n, 'm3', 2579);
const NEW_URL = 'http://127.0.0.1:2780';

function threeMembers(): FakeCluster {
  return new FakeCluster([M1, M2, M3]);
}

/** Options replacing m3 with m4; the "operator" starts m4 when told to. */
function replaceOptions(cluster: FakeCluster, clock: Clock, events: ReplaceEvent[], extra: Partial<ReplaceMemberOptions> = {}): ReplaceMemberOptions {
  return {
    old: 'm3',
    name: 'm4',
    peerUrls: [NEW_URL],
    clock,
    timeoutMs: 60_000,
    onEvent: (event) => {
      events.push(event);
      if (event.type === 'start-required') cluster.start(event.member.id, 'm4', 2779);
    },
    ...extra,
  };
}

function types(events: readonly ReplaceEvent[]): string[] {
  return events.map((event) => (event.type === 'step' ? `step:${event.step}${event.resumed ? ':resumed' : ''}` : event.type === 'retrying' ? `retrying:${event.step}` : event.type));
}

function assertReplaced(cluster: FakeCluster): void {
  const names = cluster.members.map((one) => `${one.name}${one.isLearner ? '(learner)' : ''}`);
  assert.deepEqual(names, ['m1', 'm2', 'm4']);
}

test('a replacement adds a learner, reports the start settings, waits, promotes when caught up, removes the old member', async () => {
  const cluster = threeMembers();
  const clock = fakeClock(cluster);
  const events: ReplaceEvent[] = [];
  const result = await replaceMember(cluster, replaceOptions(cluster, clock, events));
  assertReplaced(cluster);
  assert.ok(cluster.listReads.length > 0 && cluster.listReads.every(Boolean), 'every membership read is linearizable (a member\'s own list can lag)');
  assert.deepEqual(types(events), [
    'step:add',
    'added',
    'step:wait-start',
    'start-required',
    'started',
    'step:promote',
    'catching-up',
    'catching-up',
    'caught-up',
    'promoted',
    'step:remove-old',
    'removed',
    'step:done',
    'done',
  ]);
  const start = events.find((event) => event.type === 'start-required');
  assert.ok(start?.type === 'start-required');
  assert.deepEqual(start.settings, {
    ETCD_NAME: 'm4',
    ETCD_INITIAL_CLUSTER: `m1=http://127.0.0.1:2479,m2=http://127.0.0.1:2579,m3=http://127.0.0.1:2679,m4=${NEW_URL}`,
    ETCD_INITIAL_ADVERTISE_PEER_URLS: NEW_URL,
    ETCD_INITIAL_CLUSTER_STATE: 'existing',
  });
  const progress = events.filter((event) => event.type === 'catching-up' || event.type === 'caught-up').map((event) => ('appliedIndex' in event ? `${event.appliedIndex}/${event.leaderIndex}` : ''));
  // The learner started with applied index 0 and applied 40 entries per poll (one before the first look).
  assert.deepEqual(progress, ['40/100', '80/100', '100/100']);
  assert.equal(result.member.name, 'm4');
  assert.equal(result.removed?.id, M3.id);
  assert.deepEqual([cluster.calls.memberAdd, cluster.calls.memberPromote, cluster.calls.memberRemove], [1, 1, 1]);
});

for (const point of ['added', 'started', 'caught-up', 'promoted', 'removed'] as const) {
  test(`a run interrupted after "${point}" is finished by a second run that resumes, each write made once`, async () => {
    const cluster = threeMembers();
    const clock = fakeClock(cluster);
    const first: ReplaceEvent[] = [];
    const controller = new AbortController();
    const options = replaceOptions(cluster, clock, first, { signal: controller.signal });
    const interrupted = replaceMember(cluster, {
      ...options,
      onEvent: (event) => {
        options.onEvent?.(event);
        if (event.type === point) controller.abort();
      },
    });
    await assert.rejects(interrupted, CancelledError);
    const second: ReplaceEvent[] = [];
    await replaceMember(cluster, replaceOptions(cluster, clock, second));
    assertReplaced(cluster);
    const resumedAt = { added: 'wait-start', started: 'promote', 'caught-up': 'promote', promoted: 'remove-old', removed: 'done' }[point];
    assert.equal(types(second)[0], `step:${resumedAt}:resumed`, `second run: ${types(second).join(' ')}`);
    assert.deepEqual([cluster.calls.memberAdd, cluster.calls.memberPromote, cluster.calls.memberRemove], [1, 1, 1], 'each membership write was sent once');
    if (point === 'added') assert.ok(second.some((event) => event.type === 'start-required'), 'the resumed run reports the start settings again');
  });
}

test('a run killed between a write being applied and its answer (lost answer) resumes from the membership', async () => {
  for (const method of ['memberAdd', 'memberPromote', 'memberRemove'] as const) {
    const cluster = threeMembers();
    const clock = fakeClock(cluster);
    cluster.fail(method, new UnavailableError('stopped', { detail: 'connection reset', grpcCode: 14 }), { apply: true });
    const events: ReplaceEvent[] = [];
    await replaceMember(cluster, replaceOptions(cluster, clock, events));
    assertReplaced(cluster);
    assert.equal(cluster.calls[method], 1, `${method} whose answer was lost is not sent again`);
    assert.ok(types(events).includes(`retrying:${{ memberAdd: 'add', memberPromote: 'promote', memberRemove: 'remove-old' }[method]}`));
  }
});

test('stale membership reads after a write whose answer was lost: the refusals prove the write and nothing is done twice', async () => {
  // Remove applied, answer lost, and the next read (from a lagging member) still lists m3.
  const cluster = threeMembers();
  const clock = fakeClock(cluster);
  cluster.fail('memberRemove', new UnavailableError('stopped', { grpcCode: 14 }), { apply: true });
  const events: ReplaceEvent[] = [];
  const original = cluster.memberRemove.bind(cluster);
  cluster.memberRemove = async (id) => {
    const result = original(id);
    cluster.staleReads = cluster.calls.memberRemove === 1 ? 1 : 0;
    return result;
  };
  await replaceMember(cluster, replaceOptions(cluster, clock, events));
  assertReplaced(cluster);
  assert.equal(cluster.calls.memberRemove, 2, 'a second remove was answered "member not found" and taken as done');

  // Promote applied, answer lost, the next read still shows a learner.
  const promoted = threeMembers();
  const promotedClock = fakeClock(promoted);
  promoted.fail('memberPromote', new UnavailableError('stopped', { grpcCode: 14 }), { apply: true });
  const promote = promoted.memberPromote.bind(promoted);
  promoted.memberPromote = async (id) => {
    const result = promote(id);
    promoted.staleReads = promoted.calls.memberPromote === 1 ? 1 : 0;
    return result;
  };
  await replaceMember(promoted, replaceOptions(promoted, promotedClock, []));
  assertReplaced(promoted);
  assert.equal(promoted.calls.memberPromote, 2, 'a second promote was answered "can only promote a learner member" and taken as done');

  // Add applied, answer lost, the next read does not show m4: the second add is refused.
  const added = threeMembers();
  const addedClock = fakeClock(added);
  added.fail('memberAdd', new UnavailableError('stopped', { grpcCode: 14 }), { apply: true });
  const add = added.memberAdd.bind(added);
  added.memberAdd = async (request) => {
    const result = add(request);
    added.staleReads = added.calls.memberAdd === 1 ? 1 : 0;
    return result;
  };
  await replaceMember(added, replaceOptions(added, addedClock, []));
  assertReplaced(added);
  assert.equal(added.members.filter((one) => one.peerUrls.includes(NEW_URL)).length, 1, 'one member with the new peer URLs');
});

test('refusals etcd gives before applying are retried: unhealthy cluster (add, remove), not in sync (promote)', async () => {
  const cluster = threeMembers();
  const clock = fakeClock(cluster);
  for (let index = 0; index < 3; index += 1) cluster.fail('memberAdd', new UnhealthyClusterError('unhealthy', { grpcCode: 14 }), { apply: false });
  cluster.fail('memberRemove', new UnhealthyClusterError('unhealthy', { grpcCode: 14 }), { apply: false });
  cluster.fail('memberPromote', new LearnerNotReadyError('learner-not-ready', { grpcCode: 9 }), { apply: false });
  const events: ReplaceEvent[] = [];
  await replaceMember(cluster, replaceOptions(cluster, clock, events));
  assertReplaced(cluster);
  assert.deepEqual([cluster.calls.memberAdd, cluster.calls.memberPromote, cluster.calls.memberRemove], [4, 2, 2]);
  const retries = events.filter((event) => event.type === 'retrying').map((event) => (event.type === 'retrying' ? `${event.step} #${event.attempt}: ${event.reason}` : ''));
  assert.deepEqual(retries, [
    'add #1: etcdserver: unhealthy cluster',
    'add #2: etcdserver: unhealthy cluster',
    'add #3: etcdserver: unhealthy cluster',
    'promote #1: etcdserver: can only promote a learner member which is in sync with leader',
    'remove-old #1: etcdserver: unhealthy cluster',
  ]);
});

test('refusals that waiting cannot cure end the run with the server error', async () => {
  for (const [method, error] of [
    ['memberAdd', new TooManyLearnersError('too-many-learners', { grpcCode: 9 })],
    ['memberRemove', new NotEnoughStartedMembersError('member-not-enough-started', { grpcCode: 9 })],
    ['memberPromote', new NotEnoughStartedMembersError('member-not-enough-started', { grpcCode: 9 })],
    ['memberAdd', new KvError('unimplemented', { grpcCode: 12 })],
    ['memberList', new KvError('internal', { detail: 'etcdserver: permission denied', grpcCode: 7 })],
  ] as const) {
    const cluster = threeMembers();
    cluster.fail(method, error, { apply: false });
    await assert.rejects(replaceMember(cluster, replaceOptions(cluster, fakeClock(cluster), [])), (thrown: unknown) => thrown === error, `${method} ${error.message}`);
  }
});

test('every wait ends at the deadline: a new member that is never started times out, polling stays within its bounds', async () => {
  const cluster = threeMembers();
  const clock = fakeClock(cluster);
  const events: ReplaceEvent[] = [];
  const options = replaceOptions(cluster, clock, events, { timeoutMs: 10_000, pollIntervalMs: 1, onEvent: (event) => events.push(event) });
  await assert.rejects(replaceMember(cluster, options), (error: unknown) => error instanceof TimeoutError && /waiting for m4 to be started/.test(error.message) && /run it again/.test(error.message));
  assert.ok(clock.now() <= 10_000, `stopped at ${clock.now()} ms of fake time`);
  assert.ok(clock.slept.every((ms) => ms <= POLL_INTERVAL_MIN_MS), 'a 1 ms poll interval is raised to the minimum');
  assert.ok(clock.slept.length <= 10_000 / POLL_INTERVAL_MIN_MS + 1, `${clock.slept.length} polls`);
  assert.equal(events.filter((event) => event.type === 'start-required').length, 1, 'the start settings are reported once per run');

  // A learner that never gets in sync: promote is retried until the deadline, then the run fails.
  const lagging = threeMembers();
  lagging.catchUpPerSleep = 0n;
  const laggingClock = fakeClock(lagging);
  await assert.rejects(replaceMember(lagging, replaceOptions(lagging, laggingClock, [], { timeoutMs: 5_000 })), (error: unknown) => error instanceof TimeoutError && /catch up/.test(error.message));
  assert.ok(laggingClock.now() <= 5_000);
});

test('when the progress cannot be read, the promote lets the server decide', async () => {
  const cluster = threeMembers();
  const clock = fakeClock(cluster);
  for (let index = 0; index < 50; index += 1) cluster.fail('status', new UnavailableError('stopped', { grpcCode: 14 }), { apply: false });
  const events: ReplaceEvent[] = [];
  await replaceMember(cluster, replaceOptions(cluster, clock, events));
  assertReplaced(cluster);
  // Two reasons alternate (progress unreadable, then "not in sync"): each is counted on.
  const attempts = (pattern: RegExp): number[] => events.flatMap((event) => (event.type === 'retrying' && pattern.test(event.reason) ? [event.attempt] : []));
  const unreadable = attempts(/cannot read the progress of m4/);
  const notInSync = attempts(/in sync with leader/);
  assert.ok(unreadable.length >= 2 && notInSync.length >= 1, `${unreadable} / ${notInSync}`);
  assert.deepEqual(unreadable, unreadable.map((_, index) => index + 1));
  assert.deepEqual(notInSync, notInSync.map((_, index) => index + 1));
});

test('an unstarted voter with the new peer URLs (added by hand) is waited for and never promoted', async () => {
  const cluster = threeMembers();
  const clock = fakeClock(cluster);
  await cluster.memberAdd({ peerUrls: [NEW_URL] });
  const events: ReplaceEvent[] = [];
  await replaceMember(cluster, replaceOptions(cluster, clock, events));
  assertReplaced(cluster);
  assert.equal(cluster.calls.memberPromote, 0);
  assert.deepEqual(types(events).slice(0, 4), ['step:wait-start:resumed', 'start-required', 'started', 'step:remove-old']);
});

test('the old member may be named by hex id; a run after completion does nothing', async () => {
  const cluster = threeMembers();
  const clock = fakeClock(cluster);
  await replaceMember(cluster, replaceOptions(cluster, clock, [], { old: M3.id.toString(16) }));
  assertReplaced(cluster);
  const again: ReplaceEvent[] = [];
  const result = await replaceMember(cluster, replaceOptions(cluster, clock, again, { old: M3.id.toString(16) }));
  assert.deepEqual(types(again), ['step:done:resumed', 'done']);
  assert.equal(result.removed, undefined);
  assert.equal(cluster.calls.memberAdd + cluster.calls.memberPromote + cluster.calls.memberRemove, 3);
});

test('planReplacement refuses what it cannot safely go on with', () => {
  const target = { old: 'm3', name: 'm4', peerUrls: [NEW_URL] };
  const refused = (members: Member[], override: Partial<typeof target> = {}): string => {
    const plan = planReplacement(members, { ...target, ...override });
    assert.equal(plan.step, 'refuse', JSON.stringify(plan, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString(16) : value)));
    return plan.step === 'refuse' ? plan.reason : '';
  };
  assert.match(refused([M1, M2]), /no member m3/);
  assert.match(refused([M1, M2, M3], { name: 'm2' }), /already has the name m2/);
  assert.match(refused([M1, M2, M3], { name: 'm3' }), /already has the name m3/);
  assert.match(refused([M1, M2, M3], { peerUrls: [M2.peerUrls[0]] }), /belong to member m2/);
  assert.match(refused([M1, M2, M3], { peerUrls: [M3.peerUrls[0]], name: 'm3' }), /is the member with the new peer URLs/);
  assert.match(refused([M1, M2, M3], { peerUrls: [M2.peerUrls[0], M3.peerUrls[0]] }), /belong to several members/);
  assert.match(refused([M1, M2, M3, { ...member(9n, '', 2779, { started: false }), peerUrls: [NEW_URL, 'http://127.0.0.1:2781'] }]), /not http/);
  assert.match(refused([M1, M2, { ...M3, name: 'x' }, { ...M2, id: 7n, name: 'x', peerUrls: ['http://127.0.0.1:1'] }], { old: 'x' }), /names several members/);
  // OLD absent while NEW exists: a resumed run after OLD was removed (by it or by hand).
  assert.equal(planReplacement([M1, M2, { ...member(9n, 'm4', 2679), peerUrls: [NEW_URL] }], target).step, 'done');
  // URL comparison ignores surrounding space and the scheme's case, as etcd stores URLs.
  assert.equal(planReplacement([M1, M2, M3, { ...member(9n, 'm4', 2679, { learner: true }), peerUrls: [NEW_URL] }], { ...target, peerUrls: [` HTTP${NEW_URL.slice(4)}`] }).step, 'promote');
});

test('replaceMember checks its arguments before any call', async () => {
  const cluster = threeMembers();
  await assert.rejects(replaceMember(cluster, { old: 'm3', name: '', peerUrls: [NEW_URL] }), ReplaceRefusedError);
  await assert.rejects(replaceMember(cluster, { old: 'm3', name: 'm4', peerUrls: ['127.0.0.1:2380'] }), /first path segment in URL cannot contain colon/);
  await assert.rejects(replaceMember(cluster, { old: 'm3', name: 'm4', peerUrls: [] }), /no valid URLs given/);
  assert.equal(cluster.calls.memberList, 0);
});

test('startSettings lists every peer URL in membership order, the new member by its given name', () => {
  const added = { ...member(0x8c339fbbdddba35n, '', 2779, { started: false, learner: true }) };
  const unstarted = { ...member(5n, '', 2879, { started: false }) };
  const multi = { ...M1, peerUrls: ['http://127.0.0.1:2479', 'http://10.0.0.1:2380'] };
  assert.deepEqual(startSettings([multi, added, unstarted, M2], { id: added.id, name: 'm4', peerUrls: added.peerUrls }), {
    ETCD_NAME: 'm4',
    ETCD_INITIAL_CLUSTER: 'm1=http://127.0.0.1:2479,m1=http://10.0.0.1:2380,m4=http://127.0.0.1:2879,=http://127.0.0.1:2979,m2=http://127.0.0.1:2579',
    ETCD_INITIAL_ADVERTISE_PEER_URLS: 'http://127.0.0.1:2879',
    ETCD_INITIAL_CLUSTER_STATE: 'existing',
  });
});

test('a call cancelled by the server (the member answering exited) is retried; one cancelled by the caller ends the run', async () => {
  const cluster = threeMembers();
  const clock = fakeClock(cluster);
  cluster.fail('memberList', new CancelledError('canceled', { grpcCode: 1 }), { apply: false });
  await replaceMember(cluster, replaceOptions(cluster, clock, []));
  assertReplaced(cluster);
  const again = threeMembers();
  const controller = new AbortController();
  controller.abort();
  await assert.rejects(replaceMember(again, replaceOptions(again, fakeClock(again), [], { signal: controller.signal })), CancelledError);
});
