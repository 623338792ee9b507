/**
 * Goal: the linearizability checker accepts linearizable register histories and rejects
 * non-linearizable ones. Method: small hand-written histories with known answers (stale reads,
 * lost writes, CAS anomalies, unknown outcomes), per-key composition, the pruning of
 * unobserved unknown writes, and a randomized check that histories generated from a real
 * sequential execution (with overlapping intervals) are always accepted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkLinearizable, pruneRegisterHistory, registerModel, type Operation, type RegisterInput, type RegisterOutput } from '../../fault/checker/linearizability.js';

type Op = Operation<RegisterInput, RegisterOutput>;
let nextId = 0;
function op(client: number, callMs: number, returnMs: number | null, input: RegisterInput, output: RegisterOutput | undefined, key = 'k'): Op {
  return { id: nextId++, client, key, input, output, callMs, returnMs };
}
const w = (value: string): RegisterInput => ({ kind: 'write', value });
const r: RegisterInput = { kind: 'read' };
const cas = (from: string | null, to: string): RegisterInput => ({ kind: 'cas', from, to });
const read = (value: string | null): RegisterOutput => ({ kind: 'read', value });
const wrote: RegisterOutput = { kind: 'write' };
const casOk: RegisterOutput = { kind: 'cas', succeeded: true };
const casFail = (value: string | null): RegisterOutput => ({ kind: 'cas', succeeded: false, value });

const verdict = (ops: Op[]): string => checkLinearizable(registerModel, ops).verdict;

test('sequential write then read is linearizable', () => {
  assert.equal(verdict([op(1, 0, 10, w('a'), wrote), op(2, 20, 30, r, read('a'))]), 'ok');
});

test('a read of the initial (absent) value is linearizable', () => {
  assert.equal(verdict([op(1, 0, 10, r, read(null))]), 'ok');
});

test('a stale read after a completed write is not linearizable', () => {
  assert.equal(verdict([op(1, 0, 10, w('a'), wrote), op(1, 20, 30, w('b'), wrote), op(2, 40, 50, r, read('a'))]), 'illegal');
});

test('a read concurrent with a write may see either value', () => {
  assert.equal(verdict([op(1, 0, 10, w('a'), wrote), op(1, 20, 60, w('b'), wrote), op(2, 30, 40, r, read('a')), op(3, 30, 40, r, read('b'))]), 'ok');
});

test('two readers that disagree on the order of two writes are caught (no real-time order)', () => {
  // Writes a and b concurrent; reader 2 sees b then a, reader 3 sees a then b, sequentially.
  const ops = [
    op(1, 0, 100, w('a'), wrote), op(4, 0, 100, w('b'), wrote),
    op(2, 10, 20, r, read('b')), op(2, 30, 40, r, read('a')),
    op(3, 10, 20, r, read('a')), op(3, 30, 40, r, read('b')),
  ];
  assert.equal(verdict(ops), 'illegal');
});

test('a read of a value never written is not linearizable', () => {
  assert.equal(verdict([op(1, 0, 10, w('a'), wrote), op(2, 20, 30, r, read('zzz'))]), 'illegal');
});

test('a lost acknowledged write (later read sees the older value) is caught', () => {
  assert.equal(verdict([op(1, 0, 10, w('a'), wrote), op(2, 15, 20, w('b'), wrote), op(3, 30, 40, r, read('a'))]), 'illegal');
});

test('CAS success and failure follow the register state', () => {
  assert.equal(verdict([op(1, 0, 10, w('a'), wrote), op(2, 20, 30, cas('a', 'b'), casOk), op(3, 40, 50, r, read('b'))]), 'ok');
  assert.equal(verdict([op(1, 0, 10, w('a'), wrote), op(2, 20, 30, cas('x', 'b'), casFail('a'))]), 'ok');
  assert.equal(verdict([op(1, 0, 10, w('a'), wrote), op(2, 20, 30, cas('x', 'b'), casOk)]), 'illegal');
  assert.equal(verdict([op(1, 0, 10, w('a'), wrote), op(2, 20, 30, cas('a', 'b'), casFail('a'))]), 'illegal');
});

test('two CASes from the same value cannot both succeed', () => {
  assert.equal(verdict([op(1, 0, 10, w('a'), wrote), op(2, 20, 30, cas('a', 'b'), casOk), op(3, 20, 30, cas('a', 'c'), casOk)]), 'illegal');
});

test('a write with unknown outcome may take effect late or never', () => {
  // The write of b timed out; a later read sees b: fine (it took effect).
  assert.equal(verdict([op(1, 0, 10, w('a'), wrote), op(2, 20, null, w('b'), undefined), op(3, 100, 110, r, read('b')), op(3, 120, 130, r, read('b'))]), 'ok');
  // ...and reads that never see it are fine too.
  assert.equal(verdict([op(1, 0, 10, w('a'), wrote), op(2, 20, null, w('b'), undefined), op(3, 100, 110, r, read('a'))]), 'ok');
  // But it cannot take effect before its invocation.
  assert.equal(verdict([op(1, 0, 10, w('a'), wrote), op(3, 12, 15, r, read('b')), op(2, 20, null, w('b'), undefined)]), 'illegal');
  // Once it is seen, a later read cannot go back to a.
  assert.equal(verdict([op(1, 0, 10, w('a'), wrote), op(2, 20, null, w('b'), undefined), op(3, 100, 110, r, read('b')), op(3, 120, 130, r, read('a'))]), 'illegal');
});

test('keys are checked independently; an anomaly on one key makes the history illegal', () => {
  const result = checkLinearizable(registerModel, [
    op(1, 0, 10, w('a'), wrote, 'x'), op(2, 20, 30, r, read('a'), 'x'),
    op(1, 0, 10, w('a'), wrote, 'y'), op(1, 11, 12, w('b'), wrote, 'y'), op(2, 20, 30, r, read('a'), 'y'),
  ]);
  assert.equal(result.verdict, 'illegal');
  assert.deepEqual(result.keys.map((k) => [k.key, k.verdict]), [['x', 'ok'], ['y', 'illegal']]);
  const illegal = result.keys[1];
  assert.ok(illegal.stuckAt !== undefined && illegal.longestPrefix !== undefined);
});

test('the step budget turns the verdict into unknown, never into ok', () => {
  const ops: Op[] = [];
  for (let i = 0; i < 14; i++) ops.push(op(i, 0, 1000, w(`v${i}`), wrote));
  ops.push(op(99, 2000, 2010, r, read('nope')));
  assert.equal(checkLinearizable(registerModel, ops, { maxStepsPerKey: 50 }).verdict, 'unknown');
});

test('pruning drops unknown reads and unknown writes nobody observed, keeps observed ones', () => {
  const ops = [op(1, 0, null, w('a'), undefined), op(2, 0, null, w('b'), undefined), op(3, 0, null, r, undefined), op(4, 5, 10, r, read('b')), op(5, 0, null, cas('q', 'c'), undefined)];
  const kept = pruneRegisterHistory(ops).map((o) => o.client);
  assert.deepEqual(kept, [2, 4]);
});

test('histories produced by a real sequential register with overlapping intervals are accepted', () => {
  let seed = 12345;
  const random = (): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  for (let round = 0; round < 30; round++) {
    // Pick linearization points in time order; give each op an interval around its point.
    let state: string | null = null;
    const ops: Op[] = [];
    for (let i = 0; i < 40; i++) {
      const point = i * 10 + 5;
      const callMs = point - random() * 30;
      const returnMs = point + random() * 30;
      const dice = random();
      const client = i;
      if (dice < 0.4) ops.push(op(client, callMs, returnMs, r, read(state)));
      else if (dice < 0.7) {
        const value = `w${round}-${i}`;
        const unknown = random() < 0.2;
        ops.push(op(client, callMs, unknown ? null : returnMs, w(value), unknown ? undefined : wrote));
        state = value;
      } else {
        const from: string | null = random() < 0.5 ? state : 'other';
        const to = `c${round}-${i}`;
        if (from === state) {
          ops.push(op(client, callMs, returnMs, cas(from, to), casOk));
          state = to;
        } else ops.push(op(client, callMs, returnMs, cas(from, to), casFail(state)));
      }
    }
    assert.equal(checkLinearizable(registerModel, pruneRegisterHistory(ops)).verdict, 'ok', `round ${round}`);
  }
});
