// Goal: etcdctl's member verbs behave the same against kvd as against etcd 3.4: the same
// sequence of `etcdctl member add/remove/update/promote/list` (simple and -w json) prints the
// same output with the same exit codes on a fresh 3-member kvd and a fresh 3-member etcd,
// refusals included (bad URLs, unknown ids, URLs in use, promoting a voter, a second learner,
// promoting an unstarted learner), and the happy path with a learner started as a real process
// from the settings `member add` printed, promoted, updated and removed (it then exits 0).
// Method: both clusters start at once (test/compat/kvctl/membership-target.ts) and the same
// sequence runs against each through one endpoint; the two transcripts are compared step by
// step after normalising only what must differ: member and cluster ids (derived from ports and
// tokens, or random for added members), member names (m1..m3 in kvd's harness, m0..m2 in etcd's
// launcher), ports, the raft term, and the order of members (etcd sorts them by id). Every add
// uses ports of its own (etcd refuses to re-add a removed member's URLs within the same second),
// and a learner is updated only after its promotion (etcd 3.4 drops the learner flag of an
// updated learner). Where kvd differs from etcd on purpose, the difference is kept out of the
// comparison and asserted on its own (last test).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect, hexId, UnhealthyClusterError, type Client, type Member } from '../../src/client/index.js';
import * as grpc from '@grpc/grpc-js';
import { call } from '../integration/harness.js';
import { ETCDCTL_BIN } from './etcd-cluster.js';
import { joinPorts, membershipSkip, startMembershipTarget, waitCaughtUp, type MembershipTarget, type TargetKind } from './kvctl/membership-target.js';

interface Run {
  readonly args: string;
  readonly stdout: string;
  /** stderr without etcdctl's JSON log lines (client retries). */
  readonly errors: string;
  readonly code: number | null;
}

/** Runs etcdctl against one endpoint (so every call asks the same member). */
function etcdctl(endpoint: string, args: readonly string[]): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(ETCDCTL_BIN, ['--endpoints', endpoint, ...args], { env: { ...process.env, ETCDCTL_API: '3' }, stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (code) => {
      const errors = stderr.split('\n').filter((line) => line !== '' && !line.startsWith('{"level"')).join('\n');
      resolve({ args: args.join(' '), stdout, errors, code });
    });
  });
}

/** A value that differs between the two clusters, and the placeholder it is compared as. */
type Substitution = readonly [value: string, placeholder: string];

/** What one cluster ran, with what must be normalised before comparing. */
interface Transcript {
  readonly kind: TargetKind;
  readonly runs: Run[];
  /** Ids (hex and decimal), names and ports, with their placeholders. */
  readonly substitutions: Substitution[];
}

/** The substitutions for a member id: hex (as etcdctl prints it in text) and decimal (in json). */
function idSubstitutions(id: bigint, placeholder: string): Substitution[] {
  return [[hexId(id), placeholder], [BigInt.asUintN(64, id).toString(), placeholder]];
}

/** Sorts the items of the comma-separated list each match of `pattern` (group 1) holds. */
function sortInside(text: string, pattern: RegExp, split: (inner: string) => string[]): string {
  return text.replace(pattern, (whole: string, inner: string) => whole.replace(inner, split(inner).sort().join(',')));
}

/** Replaces what differs between the clusters by placeholders and puts members in a fixed order. */
function normalise(text: string, substitutions: readonly Substitution[]): string {
  let out = text;
  // Ids and names as whole words (a longer value first, so no value is replaced inside another).
  const words = [...substitutions].filter(([value]) => !value.startsWith(':')).sort((a, b) => b[0].length - a[0].length);
  for (const [value, placeholder] of words) {
    // `Member %16x ... cluster %16x` pads a short id with spaces; elsewhere ids stand alone.
    out = out.replace(new RegExp(`(Member|cluster) +${value}\\b`, 'g'), `$1 ${placeholder}`).replace(new RegExp(`(?<![0-9a-zA-Z])${value}(?![0-9a-zA-Z])`, 'g'), placeholder);
  }
  for (const [port, placeholder] of substitutions.filter(([value]) => value.startsWith(':'))) out = out.replace(new RegExp(`${port}(?![0-9])`, 'g'), placeholder);
  out = out.replace(/"raft_term":\d+/g, '"raft_term":T');
  out = sortInside(out, /ETCD_INITIAL_CLUSTER="([^"]*)"/g, (inner) => inner.split(','));
  out = sortInside(out, /"members":\[(.*?)\]\}?$/gm, (inner) => inner.split(/(?<=\}),(?=\{)/));
  // member list rows (id, status, name, peer URLs, client URLs, learner) in a fixed order.
  const lines = out.split('\n');
  const rows = lines.map((line, index) => ({ line, index })).filter(({ line }) => /^[0-9A-Za-z-]+, (started|unstarted), /.test(line));
  const sorted = rows.map(({ line }) => line).sort();
  rows.forEach(({ index }, position) => (lines[index] = sorted[position]));
  return lines.join('\n');
}

function view(transcript: Transcript): Array<{ args: string; stdout: string; errors: string; code: number | null }> {
  return transcript.runs.map((run) => ({ args: normalise(run.args, transcript.substitutions), stdout: normalise(run.stdout, transcript.substitutions), errors: normalise(run.errors, transcript.substitutions), code: run.code }));
}

function idByPeerUrl(members: readonly Member[], peerUrl: string): bigint {
  const found = members.find((member) => member.peerUrls.includes(peerUrl));
  assert.ok(found !== undefined, `a member with peer URL ${peerUrl}`);
  return found.id;
}

/**
 * Waits until the cluster accepts a voter (etcd refuses every change, kvd changes other than
 * adding a learner, with "unhealthy cluster" for ~5 s after a start): adds an unstarted voter
 * on a port nobody listens on and removes it again, retrying "unhealthy cluster".
 */
async function waitUntilVotersMayBeAdded(client: Client, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const probe = `http://127.0.0.1:${(await joinPorts()).peerPort}`;
  for (;;) {
    try {
      const added = await client.cluster.memberAdd({ peerUrls: [probe] });
      await client.cluster.memberRemove(added.member.id);
      return;
    } catch (error: unknown) {
      if (!(error instanceof UnhealthyClusterError) || Date.now() > deadline) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** `accepted`, or the gRPC code and details of the refusal. */
async function outcome(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'accepted';
  } catch (error: unknown) {
    const { code, details } = error as grpc.ServiceError;
    return `${code} ${details}`;
  }
}

const skip = membershipSkip('etcd') || (existsSync(ETCDCTL_BIN) ? false : `etcdctl is not installed (${ETCDCTL_BIN})`);

describe('etcdctl member verbs: the same output and exit codes against kvd and etcd', { skip }, () => {
  const targets = new Map<TargetKind, { target: MembershipTarget; client: Client }>();

  before(async () => {
    // Both clusters at once; each then waits out etcd's "unhealthy cluster" after a start.
    await Promise.all((['kvd', 'etcd'] as const).map(async (kind) => {
      const target = await startMembershipTarget(kind);
      const client = connect({ endpoints: target.endpoints });
      targets.set(kind, { target, client });
      await waitUntilVotersMayBeAdded(client);
    }));
  });
  after(async () => {
    await Promise.all([...targets.values()].map(async ({ target, client }) => {
      client.close();
      await target.stop();
    }));
  });

  /** The whole sequence against one cluster. */
  async function sequence(kind: TargetKind): Promise<Transcript> {
    const { target, client } = targets.get(kind) ?? assert.fail(`${kind} started`);
    const endpoint = target.endpoints[0];
    const runs: Run[] = [];
    const run = async (args: string[]): Promise<Run> => {
      const result = await etcdctl(endpoint, args);
      runs.push(result);
      return result;
    };
    const listed = await client.cluster.memberList();
    const originals = [...listed.members].sort((a, b) => a.name.localeCompare(b.name));
    const substitutions: Substitution[] = [...idSubstitutions(listed.header.clusterId, 'CLUSTER-ID')];
    originals.forEach((member, index) => {
      substitutions.push(...idSubstitutions(member.id, `ID${index}`), [member.name, `NAME${index}`]);
      for (const url of [...member.peerUrls, ...member.clientUrls]) substitutions.push([`:${new URL(url).port}`, `:${member.peerUrls.includes(url) ? 'PEER' : 'CLIENT'}${index}`]);
    });
    const ports = new Map<string, { peerPort: number; clientPort: number }>();
    for (const name of ['ln', 'vu', 'lj', 'free']) {
      const pair = await joinPorts();
      ports.set(name, pair);
      substitutions.push([`:${pair.peerPort}`, `:${name.toUpperCase()}-PEER`], [`:${pair.clientPort}`, `:${name.toUpperCase()}-CLIENT`]);
    }
    const peerUrl = (name: string): string => `http://127.0.0.1:${ports.get(name)?.peerPort}`;
    const [first, second] = originals;

    await run(['member', 'list']);
    await run(['member', 'list', '-w', 'json']);
    // Refusals that change nothing. Bad URLs are refused by etcdctl's client library before
    // anything is sent; the others by the server.
    await run(['member', 'add', 'bad', '--peer-urls=foo']);
    await run(['member', 'add', 'bad', '--peer-urls=http://127.0.0.1:1/path']);
    await run(['member', 'add', 'bad', `--peer-urls=${first.peerUrls[0]}`]);
    await run(['member', 'update', hexId(first.id), `--peer-urls=${second.peerUrls[0]}`]);
    await run(['member', 'update', hexId(first.id), '--peer-urls=127.0.0.1:1']);
    await run(['member', 'remove', 'ffff']);
    await run(['member', 'update', 'ffff', `--peer-urls=${peerUrl('free')}`]);
    await run(['member', 'promote', 'ffff']);
    await run(['member', 'promote', hexId(first.id)]);
    await run(['member', 'remove', 'not-hex']);

    // A learner, not started: a second learner and its promotion are refused.
    const add = await run(['member', 'add', 'ln', `--peer-urls=${peerUrl('ln')}`, '--learner']);
    assert.equal(add.code, 0, `${kind}: member add ln: ${add.errors}`);
    const learner = idByPeerUrl((await client.cluster.memberList()).members, peerUrl('ln'));
    substitutions.push(...idSubstitutions(learner, 'LN-ID'));
    await run(['member', 'add', 'ln2', `--peer-urls=${peerUrl('free')}`, '--learner']);
    await run(['member', 'promote', hexId(learner)]);
    await run(['member', 'promote', hexId(learner), '-w', 'json']);
    await run(['member', 'list']);
    await run(['member', 'list', '-w', 'json']);
    // A voter added while the learner is unstarted: its settings name the learner without a
    // name (`=url`). Removed again before it starts.
    const voter = await run(['member', 'add', 'vu', `--peer-urls=${peerUrl('vu')}`]);
    assert.equal(voter.code, 0, `${kind}: member add vu: ${voter.errors}`);
    const unstartedVoter = idByPeerUrl((await client.cluster.memberList()).members, peerUrl('vu'));
    substitutions.push(...idSubstitutions(unstartedVoter, 'VU-ID'));
    await run(['member', 'remove', hexId(unstartedVoter), '-w', 'json']);

    // Start the learner from what `member add` printed; promote it once in sync.
    const initialCluster = /^ETCD_INITIAL_CLUSTER="([^"]*)"$/m.exec(add.stdout)?.[1] ?? assert.fail(`${kind}: no ETCD_INITIAL_CLUSTER in:\n${add.stdout}`);
    const joined = target.startJoining({ name: 'ln', ...(ports.get('ln') ?? assert.fail('ports')), initialCluster });
    try {
      const deadline = Date.now() + 30_000;
      while (!(await client.cluster.memberList()).members.some((m) => m.id === learner && m.name === 'ln' && m.clientUrls.length > 0)) {
        assert.ok(joined.running, `${kind}: ln exited: ${joined.log().slice(-1500)}`);
        assert.ok(Date.now() < deadline, `${kind}: ln did not start: ${joined.log().slice(-1500)}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      await waitCaughtUp(client, joined.endpoint);
      await run(['member', 'list']);
      // The leader may still see a caught-up learner as behind for a moment: keep the final answer.
      let promote = await etcdctl(endpoint, ['member', 'promote', hexId(learner)]);
      while (promote.code !== 0 && /in sync with leader/.test(promote.errors) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        promote = await etcdctl(endpoint, ['member', 'promote', hexId(learner)]);
      }
      runs.push(promote);
      await run(['member', 'promote', hexId(learner)]);
      await run(['member', 'list', '-w', 'json']);
      await run(['member', 'update', hexId(learner), `--peer-urls=${peerUrl('ln')}`]);
      await run(['member', 'update', hexId(learner), `--peer-urls=${peerUrl('ln')}`, '-w', 'json']);
      await run(['member', 'remove', hexId(learner)]);
      // The removed member stops by itself with status 0.
      const exit = await Promise.race([joined.exited, new Promise<string>((resolve) => setTimeout(() => resolve('still running after 15 s'), 15_000).unref())]);
      assert.equal(exit, 0, `${kind}: the removed member exits 0: ${joined.log().slice(-1500)}`);
      await run(['member', 'remove', hexId(learner)]);
    } finally {
      await joined.kill();
    }

    // json output of an add and a remove.
    const json = await run(['member', 'add', 'lj', `--peer-urls=${peerUrl('lj')}`, '--learner', '-w', 'json']);
    assert.equal(json.code, 0, `${kind}: member add lj: ${json.errors}`);
    substitutions.push(...idSubstitutions(idByPeerUrl((await client.cluster.memberList()).members, peerUrl('lj')), 'LJ-ID'));
    await run(['member', 'remove', hexId(idByPeerUrl((await client.cluster.memberList()).members, peerUrl('lj'))), '-w', 'json']);
    await run(['member', 'list']);
    return { kind, runs, substitutions };
  }

  test('add, list, update, promote, remove and their refusals print the same on kvd and etcd (simple and json)', async () => {
    const [ours, theirs] = await Promise.all([sequence('kvd'), sequence('etcd')]);
    const left = view(ours);
    const right = view(theirs);
    assert.equal(left.length, right.length, 'same number of steps');
    for (let index = 0; index < left.length; index += 1) assert.deepEqual(left[index], right[index], `step ${index}: etcdctl ${left[index].args}`);
    // What the sequence is meant to show, so that two broken servers cannot agree on nothing.
    const byArgs = (args: string): { stdout: string; errors: string; code: number | null } | undefined => left.find((run) => run.args === args);
    assert.equal(byArgs('member add bad --peer-urls=http://127.0.0.1:PEER0')?.errors, 'Error: etcdserver: Peer URLs already exists');
    assert.equal(byArgs('member remove ffff')?.errors, 'Error: etcdserver: member not found');
    assert.equal(byArgs('member promote ID0')?.errors, 'Error: etcdserver: can only promote a learner member');
    assert.equal(byArgs('member add ln2 --peer-urls=http://127.0.0.1:FREE-PEER --learner')?.errors, 'Error: etcdserver: too many learner members in cluster');
    assert.equal(byArgs('member promote LN-ID')?.errors, 'Error: etcdserver: can only promote a learner member which is in sync with leader');
    assert.match(left.find((run) => run.args === 'member promote LN-ID' && run.code === 0)?.stdout ?? '', /^Member LN-ID promoted in cluster CLUSTER-ID\n$/);
    assert.match(byArgs('member add vu --peer-urls=http://127.0.0.1:VU-PEER')?.stdout ?? '', /^ETCD_INITIAL_CLUSTER="=http:\/\/127\.0\.0\.1:LN-PEER,NAME0=.*,vu=http:\/\/127\.0\.0\.1:VU-PEER"$/m);
    assert.match(byArgs('member list -w json')?.stdout ?? '', /"members":\[\{"ID":ID0,"name":"NAME0"/);
    assert.match(byArgs('member remove LN-ID')?.stdout ?? '', /^Member LN-ID removed from cluster CLUSTER-ID\n$/);
    assert.deepEqual(left.at(-1), { args: 'member list', stdout: left[0].stdout, errors: '', code: 0 }, 'back to the three original members');
  });

  test('MemberAdd with URLs etcdctl would not send: the same gRPC refusal from kvd and etcd', async () => {
    const bad = [['foo'], ['http://127.0.0.1:1/path'], ['http://127.0.0.1'], ['127.0.0.1:1'], ['http://127.0.0.1:1', 'ftp://127.0.0.1:2']];
    const answers = new Map<TargetKind, string[]>();
    await Promise.all((['kvd', 'etcd'] as const).map(async (kind) => {
      const { target } = targets.get(kind) ?? assert.fail(`${kind} started`);
      const outcomes: string[] = [];
      for (const urls of bad) outcomes.push(`MemberAdd ${urls.join(',')}: ${await outcome(call(target.endpoints[0], 'Cluster', 'MemberAdd', { peerURLs: urls, isLearner: true }, { timeoutMs: 5_000 }))}`);
      answers.set(kind, outcomes);
    }));
    assert.deepEqual(answers.get('kvd'), answers.get('etcd'));
    assert.ok(answers.get('kvd')?.every((line) => line.endsWith(`: ${grpc.status.INVALID_ARGUMENT} etcdserver: given member URLs are invalid`)), answers.get('kvd')?.join('\n'));

    // Not compared: etcd 3.4's MemberUpdate does not check the URLs at all (it stored "foo" as a
    // member's peer URL here, which cut that member off). kvd refuses them as MemberAdd does.
    const { target, client } = targets.get('kvd') ?? assert.fail('kvd started');
    const id = BigInt.asUintN(64, (await client.cluster.memberList()).members[0].id).toString();
    for (const urls of bad) {
      assert.equal(await outcome(call(target.endpoints[0], 'Cluster', 'MemberUpdate', { ID: id, peerURLs: urls }, { timeoutMs: 5_000 })), `${grpc.status.INVALID_ARGUMENT} etcdserver: given member URLs are invalid`, `kvd: MemberUpdate ${urls.join(',')}`);
    }
  });

  test('kvd adds a learner while a voter is down, where etcd says "unhealthy cluster"; both refuse a voter then', async () => {
    // A deliberate difference (src/server/membership-ops.ts): a learner never counts for the
    // quorum, so kvd does not ask every voter to be connected before adding one. This is what
    // lets `kvctl member replace` replace a member whose machine is gone.
    const outcomes = new Map<TargetKind, { learner: Run; voter: Run }>();
    await Promise.all((['kvd', 'etcd'] as const).map(async (kind) => {
      const { target } = targets.get(kind) ?? assert.fail(`${kind} started`);
      await target.members[2].kill();
      const endpoint = target.endpoints[0];
      // A write needs the leader to reach the others: by then it knows the killed member is gone.
      await etcdctl(endpoint, ['put', 'after-kill', 'x']);
      const learner = await etcdctl(endpoint, ['member', 'add', 'ld', `--peer-urls=http://127.0.0.1:${(await joinPorts()).peerPort}`, '--learner']);
      const voter = await etcdctl(endpoint, ['member', 'add', 'vd', `--peer-urls=http://127.0.0.1:${(await joinPorts()).peerPort}`]);
      outcomes.set(kind, { learner, voter });
    }));
    const kvd = outcomes.get('kvd') ?? assert.fail('kvd ran');
    const etcd = outcomes.get('etcd') ?? assert.fail('etcd ran');
    assert.deepEqual([etcd.learner.code, etcd.learner.errors], [1, 'Error: etcdserver: unhealthy cluster'], 'etcd 3.4 refuses a learner while a voter is down');
    assert.equal(kvd.learner.code, 0, `kvd adds the learner: ${kvd.learner.errors}`);
    assert.match(kvd.learner.stdout, /^Member +[0-9a-f]+ added to cluster +[0-9a-f]+\n\nETCD_NAME="ld"\n/);
    for (const [kind, { voter }] of outcomes) assert.deepEqual([voter.code, voter.errors], [1, 'Error: etcdserver: unhealthy cluster'], `${kind} refuses a voter while a voter is down`);
  });
});
