// Goal: `kvctl member replace` replaces a member of a live cluster end to end, and a run that
// is interrupted is finished by running it again. At the end the old member is gone, the new
// one is a voter, and a key written before the replacement reads back through the new member.
// Method: a fresh 3-member cluster (real etcd now; real kvd once its server side of issue 12
// lands: that variant is skipped until then). kvctl runs as a child process; when it prints
// the settings to start the new member with, the test starts a real member with exactly those
// (ETCD_INITIAL_CLUSTER as printed). The first replacement runs through (and meets etcd's
// "unhealthy cluster" right after start, which it must wait out); the second is interrupted
// with SIGINT while it waits for the new member, which is then started, and is run again.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { connect, hexId, type Client } from '../../../src/client/index.js';
import { waitFor } from '../client/helpers.js';
import { joinPorts, membershipSkip, startMembershipTarget, type JoiningMember, type MembershipTarget, type TargetKind } from './membership-target.js';

const KVCTL = fileURLToPath(new URL('../../../bin/kvctl.js', import.meta.url));

/** A running `kvctl member replace`. */
interface ReplaceRun {
  output(): string;
  readonly exited: Promise<number | null>;
  interrupt(): void;
}

function startReplace(endpoints: readonly string[], args: readonly string[]): ReplaceRun {
  const child = spawn(process.execPath, [KVCTL, '--endpoints', endpoints.join(','), 'member', 'replace', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  return { output: () => output, exited, interrupt: () => void child.kill('SIGINT') };
}

/** The ETCD_INITIAL_CLUSTER value kvctl printed, once its start settings are complete. */
function printedInitialCluster(output: string): string | undefined {
  if (!/ETCD_INITIAL_CLUSTER_STATE="existing"/.test(output)) return undefined;
  return /^ETCD_INITIAL_CLUSTER="([^"]*)"$/m.exec(output)?.[1];
}

function suite(kind: TargetKind): void {
  describe(`kvctl member replace against ${kind}`, { skip: membershipSkip(kind) }, () => {
    let target: MembershipTarget;
    let client: Client;
    const joined: JoiningMember[] = [];

    before(async () => {
      target = await startMembershipTarget(kind);
      client = connect({ endpoints: target.endpoints });
    });
    after(async () => {
      client?.close();
      await Promise.all(joined.map((member) => member.kill()));
      await target?.stop();
    });

    /** Starts the new member with what `run` printed, as an operator would. */
    async function startPrinted(run: ReplaceRun, name: string, ports: { peerPort: number; clientPort: number }): Promise<JoiningMember> {
      const initialCluster = await waitFor(() => printedInitialCluster(run.output()) !== undefined, 60_000, `kvctl to print the start settings:\n${run.output()}`).then(() => printedInitialCluster(run.output()) ?? '');
      assert.match(initialCluster, new RegExp(`(^|,)${name}=http://127\\.0\\.0\\.1:${ports.peerPort}(,|$)`));
      const member = target.startJoining({ name, ...ports, initialCluster });
      joined.push(member);
      return member;
    }

    /** Asserts the end state: `old` gone, `name` a voter, `key` readable through it. */
    async function assertReplaced(old: string, name: string, member: JoiningMember, key: string): Promise<void> {
      const members = (await client.cluster.memberList()).members;
      assert.equal(members.find((one) => one.name === old), undefined, `${old} is not a member: ${members.map((one) => one.name).join(',')}`);
      const replacement = members.find((one) => one.name === name);
      assert.ok(replacement !== undefined, `${name} is a member`);
      assert.equal(replacement.isLearner, false, `${name} is a voter`);
      assert.equal(members.length, 3);
      const direct = connect({ endpoints: [member.endpoint] });
      try {
        assert.equal((await direct.get(key))?.value.toString(), 'written before the replacement');
      } finally {
        direct.close();
      }
    }

    test('a replacement runs through: add, start, catch up, promote, remove; running it again does nothing', async () => {
      await client.put('/replace/first', 'written before the replacement');
      const old = target.members[2];
      const ports = await joinPorts();
      const args = [old.name, '--name', 'new1', `--peer-urls=http://127.0.0.1:${ports.peerPort}`, '--timeout', '2m', '--poll-interval', '200ms'];
      const run = startReplace(target.endpoints, args);
      const member = await startPrinted(run, 'new1', ports);
      const code = await run.exited;
      const output = run.output();
      assert.equal(code, 0, output);
      assert.match(output, new RegExp(`^Replacing [0-9a-f]+ \\(${old.name}\\) with new1: adding it as a learner$`, 'm'));
      assert.match(output, /^Member [0-9a-f]+ \(new1\) added to cluster [0-9a-f]+ as a learner$/m);
      assert.match(output, /^Member [0-9a-f]+ \(new1\) started, client URLs http:\/\/127\.0\.0\.1:\d+$/m);
      assert.match(output, /^Member [0-9a-f]+ \(new1\) promoted to voter$/m);
      assert.match(output, new RegExp(`^Member [0-9a-f]+ \\(${old.name}\\) removed from cluster [0-9a-f]+$`, 'm'));
      assert.match(output, new RegExp(`^Done: [0-9a-f]+ \\(new1\\) is a voter and ${old.name} is not a member$`, 'm'));
      const order = ['added to cluster', 'Start new1 now', 'started, client URLs', 'promoted to voter', 'removed from cluster', 'Done:'].map((text) => output.indexOf(text));
      assert.deepEqual([...order].sort((a, b) => a - b), order, `steps in order:\n${output}`);
      await assertReplaced(old.name, 'new1', member, '/replace/first');

      const again = startReplace(target.endpoints, args);
      assert.equal(await again.exited, 0, again.output());
      assert.match(again.output(), new RegExp(`^Resuming: [0-9a-f]+ \\(new1\\) is a voter and ${old.name} is not a member: nothing to do\nDone: `, 'm'));
    });

    test('an interrupted replacement is finished by running it again', async () => {
      await client.put('/replace/second', 'written before the replacement');
      const members = (await client.cluster.memberList()).members;
      const old = members.find((one) => one.name === target.members[0].name);
      assert.ok(old !== undefined);
      const ports = await joinPorts();
      // The old member named by its id this time.
      const args = [hexId(old.id), '--name', 'new2', `--peer-urls=http://127.0.0.1:${ports.peerPort}`, '--timeout', '2m', '--poll-interval', '200ms'];
      // The first test removed members[2] and added new1.
      const endpoints = [...target.endpoints.filter((endpoint) => endpoint !== target.members[2].endpoint), joined[0].endpoint];
      const first = startReplace(endpoints, args);
      await waitFor(() => printedInitialCluster(first.output()) !== undefined, 60_000, `kvctl to print the start settings:\n${first.output()}`);
      first.interrupt();
      assert.equal(await first.exited, 5, first.output());
      assert.match(first.output(), /^Error: replace canceled: run it again to resume$/m);
      assert.doesNotMatch(first.output(), /promoted to voter/);
      const member = await startPrinted(first, 'new2', ports);

      const second = startReplace(endpoints, args);
      const code = await second.exited;
      assert.equal(code, 0, second.output());
      assert.match(second.output(), /^Resuming: [0-9a-f]+ \(new2\) (was added and has not started|has started and is a learner)$/m);
      assert.doesNotMatch(second.output(), /added to cluster/, 'the second run adds nothing');
      assert.match(second.output(), /^Member [0-9a-f]+ \(new2\) promoted to voter$/m);
      await assertReplaced(old.name, 'new2', member, '/replace/second');
    });
  });
}

suite('etcd');
suite('kvd');
