/**
 * Starts a real etcd cluster (Debian `etcd-server`, /usr/bin/etcd) on loopback for side-by-side
 * compatibility tests: free ports, a temp dir, health waited for with a deadline, stopped by PID.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitFor } from '../integration/harness.js';

export const ETCD_BIN = process.env.KVD_TEST_ETCD ?? '/usr/bin/etcd';
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

/** Starts `size` etcd members; resolves once every member answers `endpoint health`. */
export async function startEtcdCluster(options: { size: number }): Promise<EtcdCluster> {
  const root = await mkdtemp(join(tmpdir(), 'kvd-etcd-'));
  const plan: Array<{ name: string; client: number; peer: number }> = [];
  for (let i = 0; i < options.size; i++) plan.push({ name: `e${i + 1}`, client: await freePort(), peer: await freePort() });
  const initial = plan.map((m) => `${m.name}=http://127.0.0.1:${m.peer}`).join(',');
  const children: ChildProcess[] = plan.map((m) => {
    const log = createWriteStream(join(root, `${m.name}.log`));
    const child = spawn(ETCD_BIN, [
      '--name', m.name,
      '--data-dir', join(root, m.name),
      '--listen-client-urls', `http://127.0.0.1:${m.client}`,
      '--advertise-client-urls', `http://127.0.0.1:${m.client}`,
      '--listen-peer-urls', `http://127.0.0.1:${m.peer}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${m.peer}`,
      '--initial-cluster', initial,
      '--initial-cluster-token', 'kvd-compat',
      '--initial-cluster-state', 'new',
      '--heartbeat-interval', '50',
      '--election-timeout', '500',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    return child;
  });
  const endpoints = plan.map((m) => `127.0.0.1:${m.client}`);
  await waitFor('etcd to be healthy', () => (etcdctl(endpoints, ['endpoint', 'health'], { timeoutMs: 5000 }).status === 0 ? true : undefined), { timeoutMs: 30_000, intervalMs: 200 });
  return {
    endpoints,
    async stop() {
      await Promise.all(children.map((child) => new Promise<void>((resolve) => {
        if (child.exitCode !== null) { resolve(); return; }
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 5000).unref();
      })));
      await rm(root, { recursive: true, force: true });
    },
  };
}
