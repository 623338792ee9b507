/**
 * Real etcd for side-by-side compatibility tests: running etcdctl (Debian `etcd-client`) and
 * starting an etcd cluster (Debian `etcd-server`) through the client suite's launcher.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { ETCD_BINARY, startEtcdCluster as startEtcdProcesses } from './client/etcd-process.js';

export const ETCD_BIN = ETCD_BINARY;
export const ETCDCTL_BIN = process.env.KVD_TEST_ETCDCTL ?? '/usr/bin/etcdctl';

export function haveEtcd(): boolean { return existsSync(ETCD_BIN); }
export function haveEtcdctl(): boolean { return existsSync(ETCDCTL_BIN); }

export interface EtcdCluster {
  readonly endpoints: string[];
  stop(): Promise<void>;
}

/** Runs etcdctl (API v3) against `endpoints`; returns exit code, stdout and stderr. */
export function etcdctl(endpoints: readonly string[], args: readonly string[], options: { input?: string; timeoutMs?: number } = {}): { status: number; stdout: string; stderr: string } {
  const result = spawnSync(ETCDCTL_BIN, [`--endpoints=${endpoints.join(',')}`, ...args], {
    env: { ...process.env, ETCDCTL_API: '3' },
    input: options.input,
    timeout: options.timeoutMs ?? 20_000,
    encoding: 'utf8',
  });
  return { status: result.status ?? -1, stdout: result.stdout ?? '', stderr: result.stderr ?? '' };
}

/**
 * Starts `size` etcd members and resolves once they are healthy: the compat tests use the same
 * launcher as the client suite (test/compat/client/etcd-process.ts).
 */
export async function startEtcdCluster(options: { size: number }): Promise<EtcdCluster> {
  const etcd = await startEtcdProcesses(options.size);
  return { endpoints: etcd.endpoints, stop: () => etcd.stop() };
}
