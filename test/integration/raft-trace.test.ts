// Goal: the leader answers a sequential put before it tells the followers the put's entry is
// committed (raft-node.ts, #sendAfterAnswers): the commit notices are not on the client's path,
// and on this VM each loopback write costs tens of µs. Also: --trace-raft-file writes a timeline
// bench/trace-put.ts can read (the stages it lines up are all there).
// Method: a real 3-member cluster with --trace-raft-file on every member; 10 puts one at a time to
// the leader to warm it up, then 20 more; after a graceful stop, the leader's trace must show, for
// most of those 20 puts' entries, the answer before any commit notice carrying that entry's index
// (before the change: none; an answer still waits now and then for the previous batch's backend
// write, which a busy machine may delay).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Cluster, put } from './harness.js';

interface TraceLine { readonly t: number; readonly member: string; readonly stage: string; readonly first: number; readonly last: number; readonly peer: string }

test('a leader answers a sequential put before it sends the commit notices; the trace has every stage', async () => {
  const cluster = await Cluster.start({ size: 3, memberArgs: (member) => ['--trace-raft-file', join(member.dataDir, '..', `${member.name}.trace`)] });
  let leader: string;
  let measuredFromUs = 0;
  try {
    leader = await cluster.waitForLeader();
    const endpoint = cluster.member(leader).endpoint;
    for (let i = 0; i < 10; i++) await put(endpoint, `warm/${i}`, 'v'.repeat(100));
    measuredFromUs = Math.round((performance.timeOrigin + performance.now()) * 1000);
    for (let i = 0; i < 20; i++) await put(endpoint, `trace/${i}`, 'v'.repeat(100));
  } finally {
    await cluster.stop({ keepData: true });
  }
  try {
    const lines = (await readFile(join(cluster.root, `${leader}.trace`), 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as TraceLine);
    const stages = new Set(lines.map((line) => line.stage));
    for (const stage of ['appended', 'sent', 'persisted', 'ack-received', 'committed', 'handed-to-apply', 'answered', 'applied', 'commit-sent']) {
      assert.ok(stages.has(stage), `the leader's trace has '${stage}' records`);
    }
    const answered = lines.filter((line) => line.stage === 'answered');
    let checked = 0;
    let answeredFirst = 0;
    for (const appended of lines.filter((line) => line.stage === 'appended' && line.t >= measuredFromUs)) {
      const index = appended.last;
      const answer = answered.find((line) => line.first <= index && index <= line.last);
      assert.ok(answer !== undefined, `entry ${index} was answered`);
      const notices = lines.filter((line) => line.stage === 'commit-sent' && line.last >= index && line.t >= appended.t);
      assert.ok(notices.length > 0, `entry ${index}: a commit notice went out`);
      const firstNotice = Math.min(...notices.map((line) => line.t));
      if (answer.t <= firstNotice) answeredFirst += 1;
      checked += 1;
    }
    assert.equal(checked, 20, 'one entry per measured put');
    assert.ok(answeredFirst >= 15, `answered before the commit notices: ${answeredFirst} of 20 puts`);
    for (const follower of cluster.members.filter((m) => m.name !== leader)) {
      const followerStages = new Set((await readFile(join(cluster.root, `${follower.name}.trace`), 'utf8')).trim().split('\n').map((line) => (JSON.parse(line) as TraceLine).stage));
      for (const stage of ['received', 'persisted', 'ack-sent', 'applied']) assert.ok(followerStages.has(stage), `${follower.name}'s trace has '${stage}' records`);
    }
  } finally {
    await cluster.stop();
  }
});
