// Goal: choose the server the client and kvctl compatibility tests run against, in one place.
// Method: KVD_TEST_SERVER=kvd (default) starts real kvd processes; KVD_TEST_SERVER=etcd starts a
// real etcd (npm test runs the client suite a second time that way when /usr/bin/etcd exists);
// KVD_TEST_ENDPOINTS (comma-separated host:port) attaches to an already running server.
import { etcdAvailable, startEtcdCluster, type EtcdMember } from './etcd-process.js';
import { Cluster } from '../../integration/harness.js';

/** A server the tests can talk to. */
export interface ServerUnderTest {
  /** Which implementation it is. */
  readonly kind: 'kvd' | 'etcd' | 'external';
  /** Client endpoints (`host:port`). */
  readonly endpoints: string[];
  /** Members that can be killed (empty for external servers). */
  readonly members: readonly EtcdMember[];
  /** Stops what was started (nothing for external servers). */
  stop(): Promise<void>;
}

const requested = process.env.KVD_TEST_SERVER === 'etcd' ? 'etcd' : 'kvd';
const external = process.env.KVD_TEST_ENDPOINTS;

/** Why the server cannot be started here (tests skip with this text), or false. */
export const serverUnavailable: string | false =
  external !== undefined && external !== '' ? false : requested === 'kvd' || etcdAvailable ? false : 'etcd is not installed (/usr/bin/etcd)';

/** Starts (or attaches to) the server under test with `members` members (default 1). */
export async function startServerUnderTest(options: { members?: number } = {}): Promise<ServerUnderTest> {
  if (external !== undefined && external !== '') {
    return { kind: 'external', endpoints: external.split(',').map((endpoint) => endpoint.trim()), members: [], stop: async () => undefined };
  }
  if (requested === 'etcd') {
    const etcd = await startEtcdCluster(options.members ?? 1);
    return { kind: 'etcd', endpoints: etcd.endpoints, members: etcd.members, stop: () => etcd.stop() };
  }
  const cluster = await Cluster.start({ size: options.members ?? 1 });
  await cluster.waitForLeader({ timeoutMs: 30_000 });
  const members: EtcdMember[] = cluster.members.map((member) => ({
    name: member.name,
    endpoint: member.endpoint,
    get running() { return member.process !== undefined; },
    kill: () => cluster.kill(member.name, 'SIGKILL'),
  }));
  return { kind: 'kvd', endpoints: cluster.endpoints, members, stop: () => cluster.stop() };
}
