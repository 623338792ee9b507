// Goal: kvctl's member verbs print what etcdctl 3.4 prints, with the same exit codes, for the
// same sequence on the same cluster: add a learner, list, refusals (second learner, promoting
// an unstarted learner), start the learner with the ETCD_* settings the tool printed, promote,
// update, remove, plus add/remove in json and table formats and every argument error.
// Method: a fresh 3-member cluster per target (real etcd now; real kvd once its server side of
// issue 12 lands: that variant is skipped until then). The sequence runs once with kvctl and
// once with etcdctl against the same endpoint, the added learner started as a real process;
// the two transcripts are compared after normalising only what must differ between runs: the
// added members' ids (random: etcd hashes the peer URLs with the current second) and so the
// order of members (etcd sorts them by id) in lists, json arrays and ETCD_INITIAL_CLUSTER, the
// added members' ports, and the raft term. Each add uses ports of its own: etcd refuses to
// re-add the peer URLs of a removed member within the same second ("member not found", the
// id is the removed one's), and etcdctl runs the whole sequence within a second.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { connect, hexId, type Client, type Member } from '../../../src/client/index.js';
import { waitFor } from '../client/helpers.js';
import { joinPorts, membershipSkip, startMembershipTarget, waitCaughtUp, waitUntilReconfigurable, type MembershipTarget, type TargetKind } from './membership-target.js';

const KVCTL = fileURLToPath(new URL('../../../cli/kvctl.js', import.meta.url));
const ETCDCTL = process.env.ETCDCTL_BINARY ?? '/usr/bin/etcdctl';
type Tool = 'kvctl' | 'etcdctl';

interface Run {
  readonly args: string;
  readonly stdout: string;
  /** stderr without etcdctl's JSON log lines. */
  readonly errors: string;
  readonly code: number | null;
}

/** Runs one tool against `endpoint` (a single endpoint, so both tools ask the same member). */
function runTool(tool: Tool, endpoint: string, args: readonly string[]): Promise<Run> {
  const command = tool === 'kvctl' ? process.execPath : ETCDCTL;
  const argv = [...(tool === 'kvctl' ? [KVCTL] : []), '--endpoints', endpoint, ...args];
  return new Promise((resolve) => {
    const child = spawn(command, argv, { env: { ...process.env, ETCDCTL_API: '3' }, stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (code) => {
      const errors = stderr
        .split('\n')
        .filter((line) => line !== '' && !line.startsWith('{"level"'))
        .join('\n');
      resolve({ args: args.join(' '), stdout, errors, code });
    });
  });
}

/** Sorts the items of a comma-separated list inside `text` found by `pattern` (group 1). */
function sortInside(text: string, pattern: RegExp, split: (inner: string) => string[], joinWith: string): string {
  return text.replace(pattern, (whole: string, inner: string) => whole.replace(inner, split(inner).sort().join(joinWith)));
}

/** What differs between the two runs: the added members' ids and the ports of each add. */
interface Transcript {
  readonly runs: Run[];
  readonly added: bigint[];
  /** Port → placeholder naming its use (the same in both runs). */
  readonly ports: ReadonlyArray<readonly [number, string]>;
}

/**
 * Replaces the added members' ids and ports with placeholders and puts member collections in a
 * fixed order (etcd orders members by id, and the added id is random).
 */
function normalise(text: string, transcript: Pick<Transcript, 'added' | 'ports'>): string {
  let out = text;
  for (const id of transcript.added) {
    const hex = hexId(id);
    // `Member %16x ...` pads a shorter id with spaces; elsewhere ids stand alone.
    out = out
      .replace(new RegExp(`Member +${hex}\\b`, 'g'), 'Member NEW-ID')
      .replace(new RegExp(`\\b${hex}\\b`, 'g'), 'NEW-ID')
      .replace(new RegExp(`\\b${BigInt.asUintN(64, id).toString()}\\b`, 'g'), 'NEW-ID');
  }
  for (const [port, name] of transcript.ports) out = out.replaceAll(`:${port}`, `:${name}`);
  out = out.replace(/"raft_term":\d+/g, '"raft_term":T');
  out = sortInside(out, /ETCD_INITIAL_CLUSTER="([^"]*)"/g, (inner) => inner.split(','), ',');
  out = sortInside(out, /"members":\[(.*?)\]\}?$/gm, (inner) => inner.split(/(?<=\}),(?=\{)/), ',');
  // Table padding depends on id lengths (an added id of 15 hex digits is padded with a space):
  // collapse it before member list rows (simple and table) are put in a fixed order, or the
  // padding decides the order.
  const lines = out.split('\n').map((line) => (line.startsWith('|') || line.startsWith('+') ? line.replace(/ +/g, ' ').replace(/-+/g, '-') : line));
  const rows = lines.map((line, index) => ({ line, index })).filter(({ line }) => /^(\| +)?(NEW-ID|[0-9a-f]{1,16}),? /.test(line.trim()) || /^\| +(NEW-ID|[0-9a-f]{1,16}) \|/.test(line));
  const sorted = rows.map(({ line }) => line).sort();
  rows.forEach(({ index }, position) => (lines[index] = sorted[position]));
  return lines.join('\n');
}

/** Compares two transcripts entry by entry, after normalising ids, ports and orders. */
function assertSameTranscripts(ours: Transcript, theirs: Transcript): void {
  const view = (transcript: Transcript): Array<Record<string, unknown>> =>
    transcript.runs.map((run) => ({ args: normalise(run.args, transcript), stdout: normalise(run.stdout, transcript), errors: normalise(run.errors, transcript), code: run.code }));
  const left = view(ours);
  const right = view(theirs);
  assert.equal(left.length, right.length, 'same number of steps');
  for (let index = 0; index < left.length; index += 1) assert.deepEqual(left[index], right[index], `step ${index}: kvctl ${ours.runs[index].args}`);
}

function idOf(members: readonly Member[], peerUrl: string): bigint {
  const found = members.find((member) => member.peerUrls.includes(peerUrl));
  assert.ok(found !== undefined, `a member with peer URL ${peerUrl}`);
  return found.id;
}

function suite(kind: TargetKind): void {
  const skip = membershipSkip(kind) || (existsSync(ETCDCTL) ? false : 'etcdctl is not installed');
  describe(`kvctl member verbs match etcdctl against ${kind}`, { skip }, () => {
    let target: MembershipTarget;
    let client: Client;
    let endpoint: string;
    let voters: Member[];

    before(async () => {
      target = await startMembershipTarget(kind);
      endpoint = target.endpoints[0];
      client = connect({ endpoints: [endpoint] });
      await waitUntilReconfigurable(client);
      voters = [...(await client.cluster.memberList()).members];
    });
    after(async () => {
      client?.close();
      await target?.stop();
    });

    test('argument errors and refusals that change nothing (exact)', async () => {
      const [first, second] = voters;
      const cases = [
        ['member', 'add'],
        ['member', 'add', 'm4'],
        ['member', 'add', 'm4', '--peer-urls='],
        ['member', 'add', 'm4', 'http://127.0.0.1:1'],
        ['member', 'add', 'm4', 'x', 'y'],
        ['member', 'add', 'm4', '--peer-urls=foo'],
        ['member', 'add', 'm4', '--peer-urls=127.0.0.1:2380'],
        ['member', 'add', 'm4', '--peer-urls=http://127.0.0.1:1/x'],
        ['member', 'add', 'm4', `--peer-urls=${first.peerUrls[0]}`],
        ['member', 'remove'],
        ['member', 'remove', '1', '2'],
        ['member', 'remove', 'zz'],
        ['member', 'remove', 'ffff'],
        ['member', 'update', hexId(first.id)],
        ['member', 'update', 'ffff', '--peer-urls=http://127.0.0.1:1'],
        ['member', 'update', hexId(first.id), `--peer-urls=${second.peerUrls[0]}`],
        ['member', 'update', hexId(first.id), '--peer-urls=http://127.0.0.1'],
        ['member', 'promote'],
        ['member', 'promote', 'zz'],
        ['member', 'promote', 'ffff'],
        ['member', 'promote', hexId(first.id)],
        ['member', 'list'],
        ['member', 'list', '-w', 'json'],
        ['member', 'list', '-w', 'table'],
      ];
      // One at a time: some of these refusals are decided when etcd applies a proposed
      // configuration change, and raft drops a second change proposed while one is pending
      // (its caller then times out).
      for (const args of cases) {
        const ours = await runTool('kvctl', endpoint, args);
        const theirs = await runTool('etcdctl', endpoint, args);
        assert.deepEqual(ours, theirs, `kvctl vs etcdctl: ${args.join(' ')}`);
      }
    });

    /** The whole sequence with one tool; returns its transcript and the ids it added. */
    async function sequence(tool: Tool): Promise<Transcript> {
      const runs: Run[] = [];
      const added: bigint[] = [];
      const ports = await joinPorts();
      const peerUrl = `http://127.0.0.1:${ports.peerPort}`;
      const jsonUrl = `http://127.0.0.1:${(await joinPorts()).peerPort}`;
      const tableUrl = `http://127.0.0.1:${(await joinPorts()).peerPort}`;
      const portNames: Array<readonly [number, string]> = [
        [ports.peerPort, 'M4-PEER'],
        [ports.clientPort, 'M4-CLIENT'],
        [Number(new URL(jsonUrl).port), 'M6-PEER'],
        [Number(new URL(tableUrl).port), 'M7-PEER'],
      ];
      const run = async (args: string[]): Promise<Run> => {
        const result = await runTool(tool, endpoint, args);
        runs.push(result);
        return result;
      };
      const add = await run(['member', 'add', 'm4', `--peer-urls=${peerUrl}`, '--learner']);
      assert.equal(add.code, 0, `${tool} member add: ${add.errors}`);
      const id = idOf((await client.cluster.memberList()).members, peerUrl);
      added.push(id);
      await run(['member', 'list']);
      await run(['member', 'list', '-w', 'json']);
      await run(['member', 'list', '-w', 'table']);
      await run(['member', 'add', 'm5', '--peer-urls=http://127.0.0.1:1', '--learner']);
      await run(['member', 'promote', hexId(id)]);

      // Start the learner with what the tool printed.
      const initialCluster = /^ETCD_INITIAL_CLUSTER="([^"]*)"$/m.exec(add.stdout)?.[1];
      assert.ok(initialCluster !== undefined, `${tool} printed ETCD_INITIAL_CLUSTER:\n${add.stdout}`);
      const learner = target.startJoining({ name: 'm4', ...ports, initialCluster });
      try {
        await waitFor(async () => (await client.cluster.memberList()).members.some((member) => member.id === id && member.name === 'm4' && member.clientUrls.length > 0), 30_000, `m4 to start (${tool}) ${learner.log().slice(-500)}`);
        await waitCaughtUp(client, learner.endpoint);
        await run(['member', 'list']);
        await run(['member', 'list', '-w', 'table']);
        // etcd may still call a caught-up learner "not in sync" for a moment: keep the final answer.
        let promote = await runTool(tool, endpoint, ['member', 'promote', hexId(id)]);
        const deadline = Date.now() + 30_000;
        while (promote.code !== 0 && /in sync with leader/.test(promote.errors) && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 200));
          promote = await runTool(tool, endpoint, ['member', 'promote', hexId(id)]);
        }
        runs.push(promote);
        await run(['member', 'update', hexId(id), `--peer-urls=${peerUrl}`]);
        await run(['member', 'update', hexId(id), `--peer-urls=${peerUrl}`, '-w', 'json']);
        await run(['member', 'list', '-w', 'json']);
        await run(['member', 'remove', hexId(id)]);
        await run(['member', 'remove', hexId(id)]);
      } finally {
        await learner.kill();
      }

      // json and table: the change is made, table is then reported as unsupported (exit 4).
      const json = await run(['member', 'add', 'm6', `--peer-urls=${jsonUrl}`, '--learner', '-w', 'json']);
      assert.equal(json.code, 0, `${tool} member add -w json: ${json.errors}`);
      const jsonId = idOf((await client.cluster.memberList()).members, jsonUrl);
      added.push(jsonId);
      await run(['member', 'remove', hexId(jsonId), '-w', 'json']);
      await run(['member', 'add', 'm7', `--peer-urls=${tableUrl}`, '--learner', '-w', 'table']);
      const tableId = idOf((await client.cluster.memberList()).members, tableUrl);
      added.push(tableId);
      await run(['member', 'update', hexId(tableId), `--peer-urls=${tableUrl}`, '-w', 'table']);
      await run(['member', 'remove', hexId(tableId), '-w', 'table']);
      await run(['member', 'list']);
      return { runs, added, ports: portNames };
    }

    test('add, list, refusals, start, promote, update, remove (simple, json, table) print the same', async () => {
      const ours = await sequence('kvctl');
      const theirs = await sequence('etcdctl');
      assertSameTranscripts(ours, theirs);
      // What the sequence is meant to show, so a broken server cannot make both tools agree on nothing.
      const byArgs = (args: string): Run | undefined => ours.runs.find((run) => normalise(run.args, ours) === args);
      assert.match(byArgs('member add m4 --peer-urls=http://127.0.0.1:M4-PEER --learner')?.stdout ?? '', /^Member +[0-9a-f]+ added to cluster +[0-9a-f]+\n\nETCD_NAME="m4"\nETCD_INITIAL_CLUSTER="[^"]*m4=http[^"]*"\nETCD_INITIAL_ADVERTISE_PEER_URLS="http:\/\/127\.0\.0\.1:\d+"\nETCD_INITIAL_CLUSTER_STATE="existing"\n$/);
      assert.equal(byArgs('member add m5 --peer-urls=http://127.0.0.1:1 --learner')?.errors, 'Error: etcdserver: too many learner members in cluster');
      assert.equal(byArgs('member promote NEW-ID')?.errors, 'Error: etcdserver: can only promote a learner member which is in sync with leader');
      assert.match(ours.runs.find((run) => run.code === 0 && /promoted in cluster/.test(run.stdout))?.stdout ?? '', /^Member +[0-9a-f]+ promoted in cluster +[0-9a-f]+\n$/);
      assert.match(byArgs('member remove NEW-ID')?.stdout ?? '', /^Member +[0-9a-f]+ removed from cluster +[0-9a-f]+\n$/);
      assert.deepEqual(
        ours.runs.filter((run) => run.args.endsWith('-w table') && !run.args.startsWith('member list')).map((run) => [run.errors, run.code]),
        [
          ['Error: table not supported as output format', 4],
          ['Error: table not supported as output format', 4],
          ['Error: table not supported as output format', 4],
        ],
      );
      assert.deepEqual((await client.cluster.memberList()).members.map((member) => member.id).sort(), voters.map((member) => member.id).sort(), 'back to the three original members');
    });
  });
}

suite('etcd');
suite('kvd');
