/**
 * Keep-alives sent to a follower must reach the leader: only the leader tracks expiries. This
 * forwards LeaseKeepAlive and LeaseTimeToLive to the leader's advertised client URL over the
 * same etcd v3 gRPC API (etcd forwards over its peer HTTP API instead; the effect is the same).
 *
 * One long-lived keep-alive stream per leader; responses come back in request order, so a FIFO
 * of waiters matches them. Bounded: at most MAX_INFLIGHT forwarded keep-alives wait at once.
 */
import * as grpc from '@grpc/grpc-js';
import { loadServices } from '../api/proto.js';
import type { LeaseTimeToLive } from '../api/backend.js';
import type { LeaseId } from '../store/mvcc/types.js';
import type { NodeId } from '../raft/types.js';
import { KvdError, errorMessage } from '../util/errors.js';
import type { KvdMember } from './member.js';

const MAX_INFLIGHT = 10_000;

interface KeepAliveWaiter { readonly id: LeaseId; readonly resolve: (ttl: number) => void; readonly reject: (error: KvdError) => void; readonly timer: NodeJS.Timeout }

interface LeaderChannel {
  readonly leader: NodeId;
  readonly client: grpc.Client;
  stream: grpc.ClientDuplexStream<unknown, unknown> | undefined;
  readonly waiters: KeepAliveWaiter[];
}

export class LeaseForwarder {
  readonly #member: KvdMember;
  #channel: LeaderChannel | undefined;

  constructor(member: KvdMember) {
    this.#member = member;
  }

  /** Renews `id` at the leader; resolves with the new TTL (0 if the lease is unknown there). */
  keepAlive(id: LeaseId, options: { deadlineMs: number }): Promise<number> {
    const channel = this.#channelToLeader();
    if (channel.waiters.length >= MAX_INFLIGHT) return Promise.reject(new KvdError('too-many-requests'));
    const stream = this.#stream(channel);
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        const index = channel.waiters.indexOf(waiter);
        if (index >= 0) channel.waiters.splice(index, 1);
        reject(new KvdError('timeout'));
      }, Math.max(0, options.deadlineMs - Date.now()));
      const waiter: KeepAliveWaiter = { id, resolve, reject, timer };
      channel.waiters.push(waiter);
      stream.write({ ID: id.toString() });
    });
  }

  /** LeaseTimeToLive at the leader. */
  timeToLive(id: LeaseId, options: { keys: boolean; deadlineMs: number }): Promise<LeaseTimeToLive> {
    const channel = this.#channelToLeader();
    return new Promise<LeaseTimeToLive>((resolve, reject) => {
      const client = channel.client as unknown as { LeaseTimeToLive: (req: unknown, opts: grpc.CallOptions, cb: (error: grpc.ServiceError | null, res: { ID: string; TTL: string; grantedTTL: string; keys: Buffer[] }) => void) => void };
      client.LeaseTimeToLive({ ID: id.toString(), keys: options.keys }, { deadline: options.deadlineMs }, (error, response) => {
        if (error !== null) {
          reject(new KvdError(error.code === grpc.status.DEADLINE_EXCEEDED ? 'timeout' : 'no-leader', { cause: error }));
          return;
        }
        if (Number(response.TTL) === -1) {
          reject(new KvdError('lease-not-found'));
          return;
        }
        resolve({ id, ttlSeconds: Number(response.TTL), grantedTtlSeconds: Number(response.grantedTTL), keys: response.keys });
      });
    });
  }

  /** Closes the channel to the leader. */
  close(): void {
    this.#reset(new KvdError('stopped'));
  }

  #channelToLeader(): LeaderChannel {
    const leader = this.#member.leader;
    if (leader === 0n) throw new KvdError('no-leader');
    if (this.#channel?.leader === leader) return this.#channel;
    this.#reset(new KvdError('leader-changed'));
    const record = this.#member.membership.get(leader);
    const url = record?.clientUrls[0];
    if (url === undefined) throw new KvdError('no-leader');
    const { Lease } = loadServices();
    const target = new URL(url);
    const client = new Lease(`${target.hostname}:${target.port}`, grpc.credentials.createInsecure());
    this.#channel = { leader, client, stream: undefined, waiters: [] };
    return this.#channel;
  }

  #stream(channel: LeaderChannel): grpc.ClientDuplexStream<unknown, unknown> {
    if (channel.stream !== undefined) return channel.stream;
    const stream = (channel.client as unknown as { LeaseKeepAlive: () => grpc.ClientDuplexStream<unknown, unknown> }).LeaseKeepAlive();
    channel.stream = stream;
    stream.on('data', (response: { ID: string; TTL: string }) => {
      const waiter = channel.waiters.shift();
      if (waiter === undefined) return;
      clearTimeout(waiter.timer);
      waiter.resolve(Number(response.TTL));
    });
    const fail = (error: unknown): void => {
      if (channel.stream === stream) channel.stream = undefined;
      const waiters = channel.waiters.splice(0);
      for (const waiter of waiters) {
        clearTimeout(waiter.timer);
        waiter.reject(new KvdError('leader-changed', { detail: `etcdserver: leader changed (forwarding keep-alive failed: ${errorMessage(error)})` }));
      }
    };
    stream.on('error', fail);
    stream.on('end', () => fail(new Error('stream ended')));
    return stream;
  }

  #reset(error: KvdError): void {
    const channel = this.#channel;
    this.#channel = undefined;
    if (channel === undefined) return;
    for (const waiter of channel.waiters.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
    }
    channel.stream?.cancel();
    channel.client.close();
  }
}
