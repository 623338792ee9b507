// Goal: /metrics speaks the Prometheus text format with etcd's metric names, types and labels, and
// a dashboard built on etcd's metrics works against kvd: every metric it plots is there and moves
// under load; with front-end processes, /metrics answered on the client port shows the whole
// member (the core's Raft metrics and the front-ends' gRPC counters).
// Method: a grammar-based parser of the text format (below, no regular expressions over whole
// lines) reads /metrics of the leader of a real 3-member kvd (one front-end per member) before
// and after a burst of JSON-gateway and gRPC writes with a watch open; the parser rejects
// malformed input (checked on its own first).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster, put } from './harness.js';

/** One parsed metric family. */
interface Family {
  readonly name: string;
  type: string;
  help: string;
  readonly samples: Array<{ readonly name: string; readonly labels: Record<string, string>; readonly value: number }>;
}

/**
 * Parses the Prometheus text exposition format 0.0.4: `# HELP name text`, `# TYPE name type`,
 * other `#` comments, and samples `name{label="value",...} value [timestamp]` with the escapes
 * \\, \" and \n in label values. Throws on anything else, naming the line.
 */
export function parsePrometheusText(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const familyOf = (sample: string): Family => {
    for (const suffix of ['_bucket', '_sum', '_count', '']) {
      if (suffix !== '' && !sample.endsWith(suffix)) continue;
      const base = sample.slice(0, sample.length - suffix.length);
      const family = families.get(base);
      if (family !== undefined && (suffix === '' || family.type === 'histogram' || family.type === 'summary')) return family;
    }
    const created: Family = { name: sample, type: 'untyped', help: '', samples: [] };
    families.set(sample, created);
    return created;
  };
  const lines = text.split('\n');
  for (const [index, line] of lines.entries()) {
    const fail = (why: string): never => {
      throw new Error(`line ${index + 1}: ${why}: ${JSON.stringify(line)}`);
    };
    if (line === '') continue;
    let at = 0;
    const isNameChar = (c: string, first: boolean): boolean => /[a-zA-Z_:]/.test(c) || (!first && /[0-9]/.test(c));
    const readName = (): string => {
      const start = at;
      while (at < line.length && isNameChar(line[at], at === start)) at++;
      if (at === start) fail('a metric or label name expected');
      return line.slice(start, at);
    };
    const skipSpaces = (): void => {
      while (line[at] === ' ' || line[at] === '\t') at++;
    };
    if (line[0] === '#') {
      at = 1;
      skipSpaces();
      const word = line.slice(at).split(' ')[0];
      if (word !== 'HELP' && word !== 'TYPE') continue; // a plain comment
      at += word.length;
      skipSpaces();
      const name = readName();
      skipSpaces();
      const rest = line.slice(at);
      let family = families.get(name);
      if (family === undefined) {
        family = { name, type: 'untyped', help: '', samples: [] };
        families.set(name, family);
      }
      if (word === 'HELP') family.help = rest;
      else {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest)) fail(`unknown type ${rest}`);
        if (family.samples.length > 0) fail('TYPE after samples');
        family.type = rest;
      }
      continue;
    }
    const name = readName();
    const labels: Record<string, string> = {};
    if (line[at] === '{') {
      at++;
      skipSpaces();
      while (line[at] !== '}') {
        const label = readName();
        skipSpaces();
        if (line[at] !== '=') fail('= expected after a label name');
        at++;
        skipSpaces();
        if (line[at] !== '"') fail('a quoted label value expected');
        at++;
        let value = '';
        for (;;) {
          if (at >= line.length) fail('unterminated label value');
          const c = line[at++];
          if (c === '"') break;
          if (c === '\\') {
            const escaped = line[at++];
            if (escaped === 'n') value += '\n';
            else if (escaped === '\\' || escaped === '"') value += escaped;
            else fail(`bad escape \\${escaped}`);
          } else value += c;
        }
        if (Object.hasOwn(labels, label)) fail(`label ${label} twice`);
        labels[label] = value;
        skipSpaces();
        if (line[at] === ',') {
          at++;
          skipSpaces();
        } else if (line[at] !== '}') fail(', or } expected');
      }
      at++;
    }
    if (line[at] !== ' ') fail('a space before the value expected');
    skipSpaces();
    const fields = line.slice(at).split(' ');
    if (fields.length < 1 || fields.length > 2) fail('value [timestamp] expected');
    const valueText = fields[0];
    const value = valueText === '+Inf' ? Infinity : valueText === '-Inf' ? -Infinity : valueText === 'NaN' ? NaN : Number(valueText);
    if (valueText === '' || (Number.isNaN(value) && valueText !== 'NaN')) fail(`bad value ${valueText}`);
    if (fields.length === 2 && !/^-?\d+$/.test(fields[1])) fail('bad timestamp');
    familyOf(name).samples.push({ name, labels, value });
  }
  return families;
}

test('the text-format parser reads the grammar and rejects malformed lines', () => {
  const parsed = parsePrometheusText('# HELP x_total A counter.\n# TYPE x_total counter\nx_total{a="1",b="q\\"uote\\\\"} 3\n# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 0.5\nh_count 2\n');
  assert.equal(parsed.get('x_total')?.type, 'counter');
  assert.deepEqual(parsed.get('x_total')?.samples[0].labels, { a: '1', b: 'q"uote\\' });
  assert.equal(parsed.get('h')?.samples.length, 3);
  for (const bad of ['x{a=1} 2', 'x{a="1" 2', 'x 2 3 4', '# TYPE x bogus', 'x{a="1",a="2"} 1', '{a="1"} 1', 'x abc']) {
    assert.throws(() => parsePrometheusText(`${bad}\n`), /line 1/, bad);
  }
});

/** What an etcd dashboard plots, with etcd's types. */
const DASHBOARD: ReadonlyArray<readonly [string, string]> = [
  ['etcd_server_has_leader', 'gauge'], ['etcd_server_is_leader', 'gauge'], ['etcd_server_leader_changes_seen_total', 'counter'],
  ['etcd_server_proposals_committed_total', 'gauge'], ['etcd_server_proposals_applied_total', 'gauge'],
  ['etcd_server_proposals_pending', 'gauge'], ['etcd_server_proposals_failed_total', 'counter'], ['etcd_server_slow_apply_total', 'counter'],
  ['etcd_disk_wal_fsync_duration_seconds', 'histogram'], ['etcd_disk_backend_commit_duration_seconds', 'histogram'],
  ['etcd_mvcc_db_total_size_in_bytes', 'gauge'], ['etcd_mvcc_db_total_size_in_use_in_bytes', 'gauge'],
  ['etcd_debugging_mvcc_keys_total', 'gauge'], ['etcd_debugging_mvcc_watcher_total', 'gauge'],
  ['etcd_network_peer_round_trip_time_seconds', 'histogram'], ['etcd_network_peer_sent_bytes_total', 'counter'],
  ['etcd_network_peer_received_bytes_total', 'counter'], ['grpc_server_started_total', 'counter'], ['grpc_server_handled_total', 'counter'],
  ['nodejs_eventloop_lag_seconds', 'gauge'], ['nodejs_heap_size_used_bytes', 'gauge'], ['nodejs_gc_duration_seconds', 'histogram'],
];

function total(families: Map<string, Family>, name: string, where: (labels: Record<string, string>) => boolean = () => true): number {
  const family = families.get(name);
  if (family === undefined) return 0;
  return family.samples.filter((sample) => (family.type !== 'histogram' || sample.name === `${name}_count`) && where(sample.labels)).reduce((sum, sample) => sum + sample.value, 0);
}

async function scrape(endpoint: string): Promise<Map<string, Family>> {
  const response = await fetch(`http://${endpoint}/metrics`);
  assert.equal(response.status, 200);
  assert.equal(response.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  return parsePrometheusText(await response.text());
}

test('every dashboard metric is there with etcd\'s type and labels and moves under load (front-ends aggregated)', { timeout: 120_000 }, async () => {
  const cluster = await Cluster.start({ size: 3, extraArgs: ['--frontends', '1'] });
  after(() => cluster.stop());
  const leaderName = await cluster.waitForLeader({ timeoutMs: 30_000 });
  const leader = cluster.member(leaderName);
  const before = await scrape(leader.endpoint);
  for (const [name, type] of DASHBOARD) {
    assert.ok(before.has(name), `${name} is exposed`);
    assert.equal(before.get(name)?.type, type, `${name} is a ${type}`);
  }
  assert.equal(total(before, 'etcd_server_has_leader'), 1);
  assert.equal(total(before, 'etcd_server_is_leader'), 1);
  assert.ok(total(before, 'etcd_server_leader_changes_seen_total') >= 1);

  // Load: a watch open over the gateway, writes through the gateway and gRPC.
  const controller = new AbortController();
  const watch = await fetch(`http://${leader.endpoint}/v3/watch`, { method: 'POST', body: JSON.stringify({ create_request: { key: Buffer.from('/m/').toString('base64'), range_end: Buffer.from('/m0').toString('base64') } }), signal: controller.signal });
  assert.equal(watch.status, 200);
  const reader = watch.body?.getReader();
  await reader?.read(); // created
  for (let i = 0; i < 30; i++) {
    const answer = await fetch(`http://${leader.endpoint}/v3/kv/put`, { method: 'POST', body: JSON.stringify({ key: Buffer.from(`/m/${i}`).toString('base64'), value: Buffer.from('v'.repeat(100)).toString('base64') }) });
    assert.equal(answer.status, 200);
    await put(leader.endpoint, `/m/g${i}`, 'v');
  }
  const afterLoad = await scrape(leader.endpoint);
  controller.abort();
  const moved = (name: string, where?: (labels: Record<string, string>) => boolean): void => {
    assert.ok(total(afterLoad, name, where) > total(before, name, where), `${name} moved under load (${total(before, name, where)} → ${total(afterLoad, name, where)})`);
  };
  for (const name of ['etcd_server_proposals_committed_total', 'etcd_server_proposals_applied_total', 'etcd_disk_wal_fsync_duration_seconds',
    'etcd_disk_backend_commit_duration_seconds', 'etcd_debugging_mvcc_keys_total', 'etcd_network_peer_round_trip_time_seconds',
    'etcd_network_peer_sent_bytes_total', 'etcd_network_peer_received_bytes_total', 'grpc_server_started_total']) moved(name);
  moved('grpc_server_handled_total', (labels) => labels.grpc_service === 'etcdserverpb.KV' && labels.grpc_method === 'Put' && labels.grpc_code === 'OK' && labels.grpc_type === 'unary');
  assert.ok(total(afterLoad, 'etcd_debugging_mvcc_watcher_total') >= 1, 'the open watch is counted (it lives in a front-end)');
  assert.ok(total(afterLoad, 'etcd_mvcc_db_total_size_in_bytes') > 0);
  for (const sample of afterLoad.get('grpc_server_handled_total')?.samples ?? []) {
    assert.deepEqual(Object.keys(sample.labels).sort(), ['grpc_code', 'grpc_method', 'grpc_service', 'grpc_type']);
  }
  // Member ids as etcd writes them in labels (types.ID.String(): hex without leading zeros, so 1 to 16 digits).
  for (const sample of afterLoad.get('etcd_network_peer_sent_bytes_total')?.samples ?? []) assert.match(sample.labels.To, /^[0-9a-f]{1,16}$/);
  for (const sample of afterLoad.get('etcd_network_peer_received_bytes_total')?.samples ?? []) assert.match(sample.labels.From, /^[0-9a-f]{1,16}$/);
  assert.ok(afterLoad.has('kvd_frontend_nodejs_eventloop_lag_seconds'), 'front-end process metrics are aggregated into the member\'s');
});

test('etcd_disk_wal_fsync_duration_seconds counts the WAL writes that synced, not the commit-only hard states the WAL holds in memory', { timeout: 120_000 }, async () => {
  const cluster = await Cluster.start({ size: 3 });
  after(() => cluster.stop());
  const leaderName = await cluster.waitForLeader({ timeoutMs: 30_000 });
  const leader = cluster.member(leaderName);
  const before = await Promise.all(cluster.members.map((member) => scrape(member.endpoint)));
  const puts = 40;
  for (let i = 0; i < puts; i++) await put(leader.endpoint, `/fsync/${i}`, 'v');
  // Every member has the last put's commit (a follower learns it with the next heartbeat at the latest).
  await new Promise((resolve) => setTimeout(resolve, 500));
  const afterPuts = await Promise.all(cluster.members.map((member) => scrape(member.endpoint)));
  cluster.members.forEach((member, i) => {
    const fsyncs = total(afterPuts[i], 'etcd_disk_wal_fsync_duration_seconds') - total(before[i], 'etcd_disk_wal_fsync_duration_seconds');
    // One synced write per put's entry (a follower may get two puts' entries in one append); a
    // member that counted its commit-only hard states as well showed about twice the puts.
    assert.ok(fsyncs >= 1 && fsyncs <= puts + 5, `${member.name}: ${fsyncs} fsyncs for ${puts} sequential puts`);
  });
});
