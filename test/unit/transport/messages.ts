// Shared fixtures for the transport tests: one sample of every Message variant.
import type { Entry, Message, NodeId } from '../../../src/raft/types.js';

/** Ids that exercise the full 64-bit range (above 2^53 and above 2^63). */
export const ID_A: NodeId = 0x8000_0000_0000_0001n;
export const ID_B: NodeId = 0xffff_ffff_ffff_fffen;
export const ID_C: NodeId = 0x0020_0000_0000_0003n;
export const CLUSTER_ID = 0xdead_beef_cafe_f00dn;

export function bytes(...values: number[]): Uint8Array {
  return new Uint8Array(values);
}

export function entries(count: number, size: number, startIndex = 1): Entry[] {
  const out: Entry[] = [];
  for (let i = 0; i < count; i++) {
    const data = new Uint8Array(size);
    for (let j = 0; j < size; j++) data[j] = (i * 31 + j) & 0xff;
    out.push({ term: 7, index: startIndex + i, type: i % 5 === 4 ? 'conf-change' : 'normal', data });
  }
  return out;
}

/** One message of every type (and both shapes of the optional ones), from `from` to `to`. */
export function everyMessage(from: NodeId, to: NodeId): Message[] {
  const base = { from, to, term: 2 ** 40 + 3 };
  return [
    { ...base, type: 'append', logTerm: 5, index: 2 ** 52, commit: 17, entries: entries(3, 10) },
    { ...base, type: 'append', logTerm: 0, index: 0, commit: 0, entries: [] },
    { ...base, type: 'append-response', index: 9, reject: true, rejectHint: 4, logTerm: 3 },
    { ...base, type: 'vote', logTerm: 4, index: 11, campaign: 'election' },
    { ...base, type: 'pre-vote', logTerm: 4, index: 11, campaign: 'transfer' },
    { ...base, type: 'vote-response', reject: false },
    { ...base, type: 'pre-vote-response', reject: true },
    { ...base, type: 'heartbeat', commit: 8, context: null },
    { ...base, type: 'heartbeat', commit: 8, context: bytes(1, 2, 3) },
    { ...base, type: 'heartbeat-response', context: null },
    { ...base, type: 'heartbeat-response', context: bytes(9) },
    {
      ...base,
      type: 'snapshot',
      snapshot: { metadata: { index: 100, term: 6, confState: { voters: [ID_A, ID_B], learners: [ID_C] } }, data: bytes(5, 6) },
    },
    { ...base, type: 'timeout-now' },
    { ...base, type: 'read-index', context: bytes(0, 0, 1) },
    { ...base, type: 'read-index-response', index: 77, context: new Uint8Array(0) },
    { ...base, type: 'propose', entries: [{ term: 0, index: 0, type: 'normal', data: bytes(42) }] },
    { ...base, type: 'propose-refused', entries: [{ term: 0, index: 0, type: 'normal', data: bytes(43) }], reason: 'transfer-in-progress' },
    { ...base, type: 'transfer-leader', transferee: ID_C },
  ];
}
