// Goal: the corruption check blames the right members: those outside a strict majority of equal
// hashes; without a majority the checking member at start (etcd refuses to start) or, for the
// leader's periodic check, the peers that differ from it; answers at another revision or
// compaction revision are not compared. The hashkv member call's codec keeps 64-bit ids exact.
// Method: judgeHashes on hand-made answers; codec round trips.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeHashAnswer, decodeHashRequest, encodeHashAnswer, encodeHashRequest, judgeHashes, type HashAnswer } from '../../../src/server/corruption.js';

const answer = (memberId: bigint, hash: number, extra: Partial<HashAnswer> = {}): HashAnswer => ({ memberId, hash, hashRevision: 40, compactRevision: 10, ...extra });

test('a strict majority decides: the members outside it are blamed, the checker included', () => {
  assert.deepEqual(judgeHashes({ local: answer(1n, 7), peers: [answer(2n, 7), answer(3n, 7)], noMajority: 'blame-self' }), { compared: [1n, 2n, 3n], blamed: [] });
  assert.deepEqual(judgeHashes({ local: answer(1n, 7), peers: [answer(2n, 7), answer(3n, 9)], noMajority: 'blame-self' }).blamed, [3n]);
  assert.deepEqual(judgeHashes({ local: answer(1n, 9), peers: [answer(2n, 7), answer(3n, 7)], noMajority: 'blame-others' }).blamed, [1n], 'a leader out of the majority blames itself');
  assert.deepEqual(judgeHashes({ local: answer(1n, 7), peers: [answer(2n, 7), answer(3n, 7), answer(4n, 5), answer(5n, 6)], noMajority: 'blame-self' }).blamed, [4n, 5n]);
});

test('without a majority the initial check blames the checker, the periodic check the others', () => {
  assert.deepEqual(judgeHashes({ local: answer(1n, 7), peers: [answer(2n, 9)], noMajority: 'blame-self' }).blamed, [1n]);
  assert.deepEqual(judgeHashes({ local: answer(1n, 7), peers: [answer(2n, 9)], noMajority: 'blame-others' }).blamed, [2n]);
  assert.deepEqual(judgeHashes({ local: answer(1n, 7), peers: [answer(2n, 8), answer(3n, 9)], noMajority: 'blame-others' }).blamed, [2n, 3n]);
});

test('answers at another revision or compaction revision are not compared', () => {
  const verdict = judgeHashes({ local: answer(1n, 7), peers: [answer(2n, 9, { compactRevision: 12 }), answer(3n, 8, { hashRevision: 41 })], noMajority: 'blame-self' });
  assert.deepEqual(verdict, { compared: [1n], blamed: [] });
});

test('the hashkv member call round-trips; ids above 2^63 stay exact', () => {
  assert.equal(decodeHashRequest(encodeHashRequest(123_456)), 123_456);
  const big = answer(0xfedc_ba98_7654_3210n, 0xffff_ffff, { hashRevision: 2 ** 40, compactRevision: 3 });
  assert.deepEqual(decodeHashAnswer(encodeHashAnswer(big)), big);
  assert.throws(() => decodeHashRequest(new Uint8Array([1, 2, 3])), /malformed hashkv member call/);
});
