/**
 * Member and cluster ids, computed as etcd does so that every member of a new cluster derives the
 * same ids from the same --initial-cluster and --initial-cluster-token: a member id is the first
 * 8 bytes (big-endian) of SHA-1 over its sorted peer URLs joined, then the token; the cluster id is
 * the same over the sorted member ids (8 bytes big-endian each).
 */
import { createHash } from 'node:crypto';
import type { NodeId } from '../raft/types.js';

/** Id of a member with `peerUrls` in the cluster named by `token`. `salt` is used for members added later (etcd adds the time). */
export function computeMemberId(options: { peerUrls: readonly string[]; token: string; salt?: string }): NodeId {
  const hash = createHash('sha1');
  hash.update([...options.peerUrls].sort().join(''));
  hash.update(options.token);
  if (options.salt !== undefined) hash.update(options.salt);
  return hash.digest().readBigUInt64BE(0);
}

/** Id of the cluster made of `memberIds`. */
export function computeClusterId(memberIds: readonly NodeId[]): bigint {
  const hash = createHash('sha1');
  const buffer = Buffer.alloc(8);
  for (const id of [...memberIds].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
    buffer.writeBigUInt64BE(id);
    hash.update(buffer);
  }
  return hash.digest().readBigUInt64BE(0);
}

/** Lower-case hex without padding, as etcd prints member ids. */
export function idToHex(id: bigint): string {
  return id.toString(16);
}
