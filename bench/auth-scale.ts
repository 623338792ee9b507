/**
 * Auth at scale, kvd against etcd: right after a leader election (the leader is killed), N
 * clients each authenticate (user + password) and then read one key with their token. Reported:
 * the time from the kill until every client has succeeded, the CPU seconds the surviving
 * members spent (core and front-end processes), Authenticate and read latencies, and retries.
 *
 * The clients share `--users` accounts (default 1: a fleet of instances of one service logging
 * in with one service account; --users 100 spreads them). etcd checks each login with bcrypt at
 * its default cost 10 and goes through Raft; kvd verifies a credential once per user and
 * password version (credential cache, shared by concurrent logins) and issues tokens without a
 * Raft round (a ReadIndex barrier per batch of logins).
 *
 * Usage: node dist/bench/auth-scale.js [--system kvd|etcd|both] [--clients 10000] [--users 1]
 *        [--connections 200] [--inflight 2000] [--frontends N]
 */
import * as grpc from '@grpc/grpc-js';
import { loadServices } from '../src/api/proto.js';
import { haveEtcd, startCluster, type BenchCluster, type SystemName } from './lib/clusters.js';
import { sampleProcess } from './lib/proc.js';
import { readFileSync } from 'node:fs';

interface Options { systems: SystemName[]; clients: number; users: number; connections: number; inflight: number; frontends: string | undefined }

function parse(argv: readonly string[]): Options {
  const arg = (name: string): string | undefined => {
    const index = argv.indexOf(`--${name}`);
    return index >= 0 ? argv[index + 1] : undefined;
  };
  const system = arg('system') ?? 'both';
  return {
    systems: system === 'both' ? ['kvd', 'etcd'] : [system as SystemName],
    clients: Number(arg('clients') ?? '10000'),
    users: Number(arg('users') ?? '1'),
    connections: Number(arg('connections') ?? '200'),
    inflight: Number(arg('inflight') ?? '2000'),
    frontends: arg('frontends'),
  };
}

type Unary = (request: object, metadata: grpc.Metadata, options: grpc.CallOptions, callback: (error: grpc.ServiceError | null, response: Record<string, unknown>) => void) => void;

function call(client: grpc.Client, method: string, request: object, token: string | undefined, timeoutMs: number): Promise<Record<string, unknown>> {
  const metadata = new grpc.Metadata();
  if (token !== undefined) metadata.set('token', token);
  return new Promise((resolve, reject) => {
    ((client as unknown as Record<string, Unary>)[method]).call(client, request, metadata, { deadline: new Date(Date.now() + timeoutMs) }, (error, response) => (error === null ? resolve(response) : reject(error)));
  });
}

/** CPU seconds of a process and its children (kvd's front-ends). */
function cpuOfTree(pid: number): number {
  let total = sampleProcess(pid)?.cpuSeconds ?? 0;
  try {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter((text) => text !== '');
    for (const child of children) total += cpuOfTree(Number(child));
  } catch (error: unknown) {
    void error; // gone
  }
  return total;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function setup(cluster: BenchCluster, users: number): Promise<void> {
  const services = loadServices();
  const endpoint = cluster.members[0].endpoint;
  const auth = new services.Auth(endpoint, grpc.credentials.createInsecure());
  const kv = new services.KV(endpoint, grpc.credentials.createInsecure());
  await call(kv, 'Put', { key: Buffer.from('bench/key'), value: Buffer.from('value') }, undefined, 10_000);
  await call(auth, 'UserAdd', { name: 'root', password: 'rootpw' }, undefined, 30_000);
  await call(auth, 'UserGrantRole', { user: 'root', role: 'root' }, undefined, 10_000);
  await call(auth, 'RoleAdd', { name: 'reader' }, undefined, 10_000);
  await call(auth, 'RoleGrantPermission', { name: 'reader', perm: { permType: 'READ', key: Buffer.from('bench/'), range_end: Buffer.from('bench0') } }, undefined, 10_000);
  for (let user = 0; user < users; user++) {
    await call(auth, 'UserAdd', { name: `app${user}`, password: `secret-${user}` }, undefined, 30_000);
    await call(auth, 'UserGrantRole', { user: `app${user}`, role: 'reader' }, undefined, 10_000);
  }
  await call(auth, 'AuthEnable', {}, undefined, 10_000);
  auth.close();
  kv.close();
}

interface Result { system: SystemName; clients: number; users: number; allSucceededMs: number; electionMs: number; cpuSeconds: number; authP50: number; authP99: number; readP50: number; readP99: number; retries: number }

async function runOne(system: SystemName, options: Options): Promise<Result> {
  const cluster = await startCluster({ system, kvdArgs: options.frontends === undefined ? [] : ['--frontends', options.frontends] });
  try {
    await setup(cluster, options.users);
    const leader = await cluster.leader();
    const survivors = cluster.members.filter((member) => member.pid !== leader.pid);
    const services = loadServices();
    const channels = Array.from({ length: options.connections }, (_, i) => {
      const endpoint = survivors[i % survivors.length].endpoint;
      const channel = new grpc.Channel(endpoint, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
      return { auth: new services.Auth(endpoint, grpc.credentials.createInsecure(), { channelOverride: channel }), kv: new services.KV(endpoint, grpc.credentials.createInsecure(), { channelOverride: channel }), channel };
    });
    // Warm the connections so that the measurement is the servers' work, not TCP setup.
    await Promise.all(channels.map((c) => new Promise<void>((resolve) => c.kv.waitForReady(new Date(Date.now() + 10_000), () => resolve()))));
    const cpuBefore = survivors.reduce((sum, member) => sum + cpuOfTree(member.pid), 0);
    const killedAt = performance.now();
    process.kill(leader.pid, 'SIGKILL');
    let electedAt: number | undefined;
    const authLatencies: number[] = [];
    const readLatencies: number[] = [];
    let retries = 0;
    let next = 0;
    const worker = async (): Promise<void> => {
      for (;;) {
        const index = next++;
        if (index >= options.clients) return;
        const channel = channels[index % channels.length];
        const user = index % options.users;
        for (let attempt = 0; ; attempt++) {
          try {
            const authStart = performance.now();
            const { token } = await call(channel.auth, 'Authenticate', { name: `app${user}`, password: `secret-${user}` }, undefined, 30_000);
            authLatencies.push(performance.now() - authStart);
            electedAt ??= performance.now();
            const readStart = performance.now();
            const response = await call(channel.kv, 'Range', { key: Buffer.from('bench/key') }, String(token), 30_000);
            readLatencies.push(performance.now() - readStart);
            if (String(response.count) !== '1') throw new Error('bench/key not read');
            break;
          } catch (error: unknown) {
            retries += 1;
            if (performance.now() - killedAt > 600_000) throw error;
            await new Promise((resolve) => setTimeout(resolve, Math.min(1_000, 20 * 2 ** Math.min(attempt, 6))));
          }
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(options.inflight, options.clients) }, () => worker()));
    const doneAt = performance.now();
    const cpuAfter = survivors.reduce((sum, member) => sum + cpuOfTree(member.pid), 0);
    for (const c of channels) {
      c.auth.close();
      c.kv.close();
      c.channel.close();
    }
    authLatencies.sort((a, b) => a - b);
    readLatencies.sort((a, b) => a - b);
    return {
      system,
      clients: options.clients,
      users: options.users,
      allSucceededMs: Math.round(doneAt - killedAt),
      electionMs: Math.round((electedAt ?? doneAt) - killedAt),
      cpuSeconds: Math.round((cpuAfter - cpuBefore) * 100) / 100,
      authP50: Math.round(percentile(authLatencies, 50)),
      authP99: Math.round(percentile(authLatencies, 99)),
      readP50: Math.round(percentile(readLatencies, 50)),
      readP99: Math.round(percentile(readLatencies, 99)),
      retries,
    };
  } finally {
    await cluster.stop();
  }
}

async function main(): Promise<void> {
  const options = parse(process.argv.slice(2));
  const results: Result[] = [];
  for (const system of options.systems) {
    if (system === 'etcd' && !haveEtcd()) {
      process.stdout.write('etcd is not installed: skipped\n');
      continue;
    }
    process.stdout.write(`${system}: ${options.clients} clients, ${options.users} user(s), leader killed, then authenticate + get each...\n`);
    const result = await runOne(system, options);
    results.push(result);
    process.stdout.write(`${JSON.stringify(result)}\n`);
  }
  process.stdout.write('\nsystem  clients users  all-succeeded  first-login  member-CPU  auth p50/p99 ms  get p50/p99 ms  retries\n');
  for (const r of results) {
    process.stdout.write(`${r.system.padEnd(7)} ${String(r.clients).padStart(7)} ${String(r.users).padStart(5)}  ${`${(r.allSucceededMs / 1000).toFixed(1)} s`.padStart(13)}  ${`${(r.electionMs / 1000).toFixed(1)} s`.padStart(11)}  ${`${r.cpuSeconds.toFixed(1)} s`.padStart(10)}  ${`${r.authP50}/${r.authP99}`.padStart(15)}  ${`${r.readP50}/${r.readP99}`.padStart(14)}  ${String(r.retries).padStart(7)}\n`);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`auth-scale: ${String(error)}\n`);
  process.exit(1);
});
