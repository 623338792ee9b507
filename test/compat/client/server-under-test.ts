// Goal: choose the server the client and kvctl compatibility tests run against, in one place.
// Method: KVD_TEST_ENDPOINTS (comma-separated host:port) points the tests at an already running
// server; otherwise a real etcd is started (kvd will be added here as another branch).
import { etcdAvailable, startEtcdCluster, type EtcdMember } from './etcd-process.js';

/** A server the tests can talk to. */
export interface ServerUnderTest {
  /** Which implementation it is. */
  readonly kind: 'etcd' | 'external';
  /** Client endpoints (`host:port`). */
  readonly endpoints: string[];
  /** Members that can be killed (empty for external servers). */
  readonly members: readonly EtcdMember[];
  /** Stops what was started (nothing for external servers). */
  stop(): Promise<void>;
}

/** Why the server cannot be started here (tests skip with this text), or false. */
export const serverUnavailable: string | false =
  process.env.KVD_TEST_ENDPOINTS !== undefined && process.env.KVD_TEST_ENDPOINTS !== '' ? false : etcdAvailable ? false : 'etcd is not installed (/usr/bin/etcd)';

/** Starts (or attaches to) the server under test with `members` members (default 1). */
export async function startServerUnderTest(options: { members?: number } = {}): Promise<ServerUnderTest> {
  const external = process.env.KVD_TEST_ENDPOINTS;
  if (external !== undefined && external !== '') {
    return { kind: 'external', endpoints: external.split(',').map((endpoint) => endpoint.trim()), members: [], stop: async () => undefined };
  }
  const etcd = await startEtcdCluster(options.members ?? 1);
  return { kind: 'etcd', endpoints: etcd.endpoints, members: etcd.members, stop: () => etcd.stop() };
}
