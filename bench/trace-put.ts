/**
 * Where a sequential put's time goes (issue 16): starts a fresh kvd cluster whose members record
 * the Raft pipeline (`--trace-raft-file`, src/server/raft-trace.ts), sends puts one at a time to
 * the leader, stops the cluster (the members write their traces), and lines each put up with
 * its log entry: client send → leader appended → sent → follower received → follower persisted
 * → follower acknowledged → leader got the acknowledgement → leader persisted → committed →
 * handed to apply → applied → client received. Prints the median and p90 of each stage's time
 * since the client sent the put, and of the gaps between stages.
 *
 *   node dist/bench/trace-put.js [--puts 2000] [--warmup 200] [--size 3] [--value-bytes 256]
 *                                [--kvd-args "--frontends 0"] [--json FILE] [--slowest N]
 *
 * `--slowest N` also lists the N slowest puts with their stages and names the gap of the critical
 * path that took longest in each (where a tail comes from).
 *
 * Timestamps are each process's high-resolution wall clock (performance.timeOrigin + now()),
 * comparable across processes of one machine to a few microseconds.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadServices } from '../src/api/proto.js';
import { startCluster } from './lib/clusters.js';

interface TraceLine {
  readonly t: number;
  readonly member: string;
  readonly stage: string;
  readonly first: number;
  readonly last: number;
  readonly peer: string;
}

function option(name: string, fallback: string): string {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 && index + 1 < process.argv.length ? process.argv[index + 1] : fallback;
}

const puts = Number(option('puts', '2000'));
const warmup = Number(option('warmup', '200'));
const size = Number(option('size', '3'));
const valueBytes = Number(option('value-bytes', '256'));
const kvdArgs = option('kvd-args', '').split(' ').filter((part) => part.length > 0);
const jsonPath = option('json', '');
const slowest = Number(option('slowest', '0'));
if (!Number.isSafeInteger(puts) || puts < 1 || !Number.isSafeInteger(warmup) || warmup < 0 || !Number.isSafeInteger(slowest) || slowest < 0) throw new Error('--puts, --warmup and --slowest take whole numbers');

const nowUs = (): number => Math.round((performance.timeOrigin + performance.now()) * 1000);

const cluster = await startCluster({
  system: 'kvd',
  size,
  keep: 'keep',
  kvdArgs,
  kvdArgsFor: (name, root) => ['--trace-raft-file', join(root, `${name}.trace`)],
});
const timings: Array<{ send: number; receive: number }> = [];
let leaderName = '';
try {
  const leader = await cluster.leader();
  leaderName = leader.name;
  const KV = loadServices().KV;
  const client = new KV(leader.endpoint, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    Put(request: object, options: grpc.CallOptions, callback: (error: grpc.ServiceError | null) => void): void;
  };
  const value = Buffer.alloc(valueBytes, 'v');
  const put = (key: string): Promise<void> => new Promise((resolve, reject) => {
    client.Put({ key: Buffer.from(key), value }, { deadline: Date.now() + 10_000 }, (error) => (error === null ? resolve() : reject(error)));
  });
  for (let i = 0; i < warmup + puts; i++) {
    const send = nowUs();
    await put(`trace/${i % 100_000}`);
    const receive = nowUs();
    if (i >= warmup) timings.push({ send, receive });
  }
  client.close();
} finally {
  await cluster.stop();
}

// ─── merge ───
const records: TraceLine[] = [];
for (const member of cluster.members) {
  const text = readFileSync(join(cluster.root, `${member.name}.trace`), 'utf8');
  for (const line of text.split('\n')) {
    if (line.length === 0) continue;
    const parsed = JSON.parse(line) as Partial<TraceLine> & { dropped?: number };
    if (parsed.dropped !== undefined) console.warn(`${member.name}: ${parsed.dropped} trace records were dropped (buffer full)`);
    else records.push(parsed as TraceLine);
  }
}
records.sort((a, b) => a.t - b.t);
const byStage = new Map<string, TraceLine[]>();
for (const record of records) {
  const key = `${record.member}/${record.stage}`;
  const list = byStage.get(key);
  if (list === undefined) byStage.set(key, [record]);
  else list.push(record);
}

/** The earliest record of `member`/`stage` at or after `from` that covers `index` (and matches `peer`). */
function find(member: string, stage: string, index: number, from: number, peer?: string): TraceLine | undefined {
  const list = byStage.get(`${member}/${stage}`) ?? [];
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid].t < from) lo = mid + 1;
    else hi = mid;
  }
  const covers = stage === 'ack-sent' || stage === 'ack-received' ? (r: TraceLine) => r.last >= index : (r: TraceLine) => r.first <= index && index <= r.last;
  for (let i = lo; i < list.length && i < lo + 10_000; i++) {
    if (covers(list[i]) && (peer === undefined || list[i].peer === peer)) return list[i];
  }
  return undefined;
}

const followers = cluster.members.map((m) => m.name).filter((name) => name !== leaderName);
/** Member name of a peer id (hex), learnt from which member received what that peer sent. */
const peerNames = new Map<string, string>();
function memberOfPeer(peerHex: string): string {
  return peerNames.get(peerHex) ?? peerHex;
}
{
  // Learn id → name: a follower's 'ack-sent' records name the leader's id; the leader's
  // 'ack-received' records name the follower's id. Each of a follower's first acknowledgements
  // votes for the peer of the first acknowledgement of the same index the leader got after it
  // was sent (the other follower's may come first now and then: the majority decides).
  const leaderAcks = byStage.get(`${leaderName}/ack-received`) ?? [];
  for (const follower of followers) {
    const votes = new Map<string, number>();
    for (const record of (byStage.get(`${follower}/ack-sent`) ?? []).slice(0, 200)) {
      const match = leaderAcks.find((r) => r.last === record.last && r.t >= record.t);
      if (match !== undefined) votes.set(match.peer, (votes.get(match.peer) ?? 0) + 1);
    }
    const best = [...votes].filter(([peer]) => !peerNames.has(peer)).sort((a, b) => b[1] - a[1])[0];
    if (best !== undefined) peerNames.set(best[0], follower);
  }
}

const stages: string[] = ['appended', 'leader persisted', ...followers.flatMap((f) => [`sent→${f}`, `${f} received`, `${f} persisted`, `${f} ack sent`, `ack from ${f}`]), 'committed', 'handed to apply', 'answered', 'applied', 'client received'];
const offsets = new Map<string, number[]>(stages.map((stage) => [stage, []]));
/** Each put's stage offsets (µs since its send), for the gaps along the critical path. */
const perPut: Array<Map<string, number>> = [];
let matched = 0;
for (const { send, receive } of timings) {
  // The put's entry: the first one the leader appended after the send, before the answer.
  const appendedRecord = (byStage.get(`${leaderName}/appended`) ?? []).find((r) => r.t >= send && r.t <= receive);
  if (appendedRecord === undefined) continue;
  const index = appendedRecord.last;
  matched += 1;
  const own = new Map<string, number>([['sent', send]]);
  perPut.push(own);
  const at = (stage: string, record: TraceLine | undefined): void => {
    if (record === undefined) return;
    offsets.get(stage)?.push(record.t - send);
    own.set(stage, record.t - send);
  };
  at('appended', appendedRecord);
  at('leader persisted', find(leaderName, 'persisted', index, send));
  for (const follower of followers) {
    const sentTo = (byStage.get(`${leaderName}/sent`) ?? []).find((r) => r.t >= send && r.first <= index && index <= r.last && memberOfPeer(r.peer) === follower);
    at(`sent→${follower}`, sentTo);
    at(`${follower} received`, find(follower, 'received', index, send));
    at(`${follower} persisted`, find(follower, 'persisted', index, send));
    at(`${follower} ack sent`, find(follower, 'ack-sent', index, send));
    const ack = (byStage.get(`${leaderName}/ack-received`) ?? []).find((r) => r.t >= send && r.last >= index && memberOfPeer(r.peer) === follower);
    at(`ack from ${follower}`, ack);
  }
  at('committed', find(leaderName, 'committed', index, send));
  at('handed to apply', find(leaderName, 'handed-to-apply', index, send));
  at('answered', find(leaderName, 'answered', index, send));
  at('applied', find(leaderName, 'applied', index, send));
  offsets.get('client received')?.push(receive - send);
  own.set('client received', receive - send);
}

const quantile = (values: number[], q: number): number => {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
};
const rows = stages.map((stage) => {
  const values = offsets.get(stage) ?? [];
  return { stage, count: values.length, p50us: quantile(values, 0.5), p90us: quantile(values, 0.9), p99us: quantile(values, 0.99) };
});
console.log(`kvd ${size} member(s), ${timings.length} sequential puts of ${valueBytes} B to the leader (${leaderName}), ${matched} matched to their entry; kvd flags: ${kvdArgs.join(' ') || '(defaults)'}`);
console.log('stage'.padEnd(24), 'p50 ms'.padStart(8), 'p90 ms'.padStart(8), 'p99 ms'.padStart(8), '  n');
for (const row of rows) console.log(row.stage.padEnd(24), ...[row.p50us, row.p90us, row.p99us].map((us) => (us / 1000).toFixed(3).padStart(8)), `  ${row.count}`);
// The critical path of one put, gap by gap (medians of each put's own gaps): the first
// follower acknowledgement makes the quorum of three.
const path = ['appended', 'first ack', 'handed to apply', 'answered', 'client received'];
const gaps: Array<{ from: string; to: string; p50us: number; p90us: number; p99us: number }> = [];
for (let i = 1; i < path.length; i++) {
  const values: number[] = [];
  for (const own of perPut) {
    const firstAck = Math.min(...followers.map((f) => own.get(`ack from ${f}`) ?? Number.POSITIVE_INFINITY));
    if (Number.isFinite(firstAck)) own.set('first ack', firstAck);
    const from = own.get(path[i - 1]);
    const to = own.get(path[i]);
    if (from !== undefined && to !== undefined) values.push(to - from);
  }
  gaps.push({ from: path[i - 1], to: path[i], p50us: quantile(values, 0.5), p90us: quantile(values, 0.9), p99us: quantile(values, 0.99) });
}
console.log('gap (each put\'s own)'.padEnd(40), 'p50 ms'.padStart(8), 'p90 ms'.padStart(8), 'p99 ms'.padStart(8));
for (const gap of gaps) console.log(`${gap.from} → ${gap.to}`.padEnd(40), ...[gap.p50us, gap.p90us, gap.p99us].map((us) => (us / 1000).toFixed(3).padStart(8)));
// The slowest puts (the tail): which gap of the critical path made each slow, and its stages.
if (slowest > 0) {
  const withGaps = perPut.filter((own) => own.has('client received') && path.every((stage) => own.has(stage)));
  const tail = [...withGaps].sort((a, b) => (b.get('client received') ?? 0) - (a.get('client received') ?? 0)).slice(0, slowest);
  const blamed = new Map<string, number>();
  console.log(`\nthe ${tail.length} slowest puts: ms since the client sent each (the gap that took longest marked *)`);
  console.log(['sent at s', ...path].map((name) => name.padStart(16)).join(''));
  for (const own of tail) {
    let worst = 1;
    for (let i = 2; i < path.length; i++) if ((own.get(path[i]) ?? 0) - (own.get(path[i - 1]) ?? 0) > (own.get(path[worst]) ?? 0) - (own.get(path[worst - 1]) ?? 0)) worst = i;
    const label = `${path[worst - 1]} → ${path[worst]}`;
    blamed.set(label, (blamed.get(label) ?? 0) + 1);
    const cells = path.map((stage, i) => `${((own.get(stage) ?? 0) / 1000).toFixed(3)}${i === worst ? '*' : ' '}`.padStart(16));
    console.log([(((own.get('sent') ?? 0) - (timings[0]?.send ?? 0)) / 1e6).toFixed(2).padStart(16), ...cells].join(''));
  }
  console.log('longest gap of the slowest puts:', [...blamed].sort((a, b) => b[1] - a[1]).map(([label, count]) => `${label} ${count}`).join(', '));
}
if (jsonPath !== '') writeFileSync(jsonPath, JSON.stringify({ size, puts: timings.length, valueBytes, kvdArgs, rows, gaps }, null, 2));
