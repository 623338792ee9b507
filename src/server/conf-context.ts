/**
 * The context a kvd conf change carries in its entry (etcd's ConfigChangeContext): which
 * membership operation it is, the member's attributes, and the id of the request waiting for it
 * on the member that proposed it. Every member applies the same bytes, so the codec is exact and
 * deterministic (JSON with ids as hex strings).
 */
import type { NodeId } from '../raft/types.js';

/** The membership operations of the Cluster service. */
export type MembershipAction = 'add' | 'add-learner' | 'promote' | 'remove' | 'update';

export interface ConfContext {
  /** Waiter id on the proposing member (unique cluster-wide, see RequestIdGenerator). */
  readonly requestId: bigint;
  readonly action: MembershipAction;
  /** The member as the operation leaves it (for remove: only the id matters). */
  readonly member: {
    readonly id: NodeId;
    readonly peerUrls: readonly string[];
    /** kvd extension: the leader promotes this learner once it is in sync. */
    readonly autoPromote: boolean;
  };
  /**
   * The proposing member's --max-learners: the apply decision uses it, so every member decides
   * the same way even when their flags differ (absent in entries of older versions: each member
   * then falls back to its own flag).
   */
  readonly maxLearners?: number;
}

interface ConfContextJson {
  requestId: string;
  action: MembershipAction;
  member: { id: string; peerUrls: string[]; autoPromote: boolean };
  maxLearners?: number;
}

const ACTIONS: ReadonlySet<string> = new Set<MembershipAction>(['add', 'add-learner', 'promote', 'remove', 'update']);

export function encodeConfContext(context: ConfContext): Uint8Array {
  const json: ConfContextJson = {
    requestId: context.requestId.toString(16),
    action: context.action,
    member: { id: context.member.id.toString(16), peerUrls: [...context.member.peerUrls], autoPromote: context.member.autoPromote },
    ...(context.maxLearners === undefined ? {} : { maxLearners: context.maxLearners }),
  };
  return Buffer.from(JSON.stringify(json), 'utf8');
}

/**
 * Decodes a context written by {@link encodeConfContext}; undefined for an empty context or one
 * this version does not understand (the change then applies without attributes, as a no-op for
 * membership records).
 */
export function decodeConfContext(bytes: Uint8Array): ConfContext | undefined {
  if (bytes.byteLength === 0) return undefined;
  let json: Partial<ConfContextJson>;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8')) as Partial<ConfContextJson>;
  } catch (error: unknown) {
    void error; // not ours: treated as no context
    return undefined;
  }
  const member = json.member;
  if (typeof json.requestId !== 'string' || typeof json.action !== 'string' || !ACTIONS.has(json.action)) return undefined;
  if (member === undefined || typeof member.id !== 'string' || !Array.isArray(member.peerUrls) || !member.peerUrls.every((url) => typeof url === 'string')) return undefined;
  if (!/^[0-9a-f]{1,16}$/.test(json.requestId) || !/^[0-9a-f]{1,16}$/.test(member.id)) return undefined;
  return {
    requestId: BigInt(`0x${json.requestId}`),
    action: json.action,
    member: { id: BigInt(`0x${member.id}`), peerUrls: member.peerUrls, autoPromote: member.autoPromote === true },
    ...(Number.isSafeInteger(json.maxLearners) && (json.maxLearners as number) >= 0 ? { maxLearners: json.maxLearners as number } : {}),
  };
}
