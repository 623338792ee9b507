/**
 * A linearizability checker in the style of Wing & Gong's search with Lowe's memoisation, as
 * Porcupine implements it: the history is a list of call and return events ordered by time;
 * the search linearizes one pending call at a time, caches (set of linearized operations,
 * model state) pairs it has already explored, and backtracks at the first return event whose
 * operation is not yet linearized. Histories are split per key first (P-compositionality:
 * a history of independent single-key objects is linearizable iff every per-key sub-history is).
 *
 * Operations whose outcome is unknown (timeouts, connection loss) have no return event: they are
 * treated as returning after everything else, so they may take effect at any point after their
 * call, or never (the model accepts any output for them).
 */

/** A sequential specification: an initial state and a step function over (state, input, output). */
export interface Model<State, Input, Output> {
  /** The state before any operation. */
  readonly init: () => State;
  /**
   * Applies `input` to `state`. `output` is undefined for an operation with an unknown outcome
   * (any output is acceptable then). Returns whether the output is legal, and the next state.
   * Must not mutate `state`.
   */
  readonly step: (state: State, input: Input, output: Output | undefined) => { ok: boolean; state: State };
  /** A string that is equal for equal states (the memoisation key). */
  readonly key: (state: State) => string;
}

/** One completed or pending operation of a history. */
export interface Operation<Input, Output> {
  /** Unique within the history. */
  readonly id: number;
  /** The client (process) that ran it; a client runs one operation at a time. */
  readonly client: number;
  /** The partition key (P-compositionality): operations on different keys are independent. */
  readonly key: string;
  readonly input: Input;
  /** Undefined when the outcome is unknown. */
  readonly output: Output | undefined;
  /** Invocation time (ms, monotonic). */
  readonly callMs: number;
  /** Completion time (ms, monotonic); null when the outcome is unknown. */
  readonly returnMs: number | null;
}

/** The verdict for one key (or the whole history). */
export type CheckVerdict = 'ok' | 'illegal' | 'unknown';

/** The result for one key. */
export interface KeyResult {
  readonly key: string;
  readonly verdict: CheckVerdict;
  readonly operations: number;
  /** Search steps taken (calls tried). */
  readonly steps: number;
  /**
   * For 'illegal': the operations of the longest linearizable prefix found, then the id of the
   * operation whose return could not be reached (the search got stuck there).
   */
  readonly longestPrefix?: readonly number[];
  readonly stuckAt?: number;
}

/** The result over every key. */
export interface CheckResult {
  readonly verdict: CheckVerdict;
  readonly keys: readonly KeyResult[];
}

/** Options for {@link checkLinearizable}. */
export interface CheckOptions {
  /** Upper bound of search steps per key before the verdict becomes 'unknown'. Default 2,000,000. */
  readonly maxStepsPerKey?: number;
}

const DEFAULT_MAX_STEPS_PER_KEY = 2_000_000;

interface EventNode {
  /** Index of the operation in the per-key array; -1 for the sentinel head. */
  readonly op: number;
  readonly kind: 'call' | 'return' | 'head';
  /** For a call: its return node. */
  match: EventNode | undefined;
  prev: EventNode | undefined;
  next: EventNode | undefined;
}

/** A growable bitset with a cheap string key. */
class Bits {
  readonly #words: Uint32Array;
  constructor(size: number, words?: Uint32Array) {
    this.#words = words ?? new Uint32Array(Math.ceil(size / 32) + 1);
  }
  set(i: number): void { this.#words[i >>> 5] |= 1 << (i & 31); }
  clear(i: number): void { this.#words[i >>> 5] &= ~(1 << (i & 31)); }
  has(i: number): boolean { return (this.#words[i >>> 5] & (1 << (i & 31))) !== 0; }
  cloneWith(i: number): Bits {
    const copy = new Bits(0, this.#words.slice());
    copy.set(i);
    return copy;
  }
  key(): string {
    let out = '';
    for (const word of this.#words) out += word.toString(36) + '.';
    return out;
  }
  count(): number {
    let n = 0;
    for (let word of this.#words) {
      while (word !== 0) { word &= word - 1; n++; }
    }
    return n;
  }
}

/** Checks one key's operations (all must share a key). */
export function checkKey<State, Input, Output>(model: Model<State, Input, Output>, ops: readonly Operation<Input, Output>[], options: CheckOptions = {}): KeyResult {
  const key = ops.length > 0 ? ops[0].key : '';
  const maxSteps = options.maxStepsPerKey ?? DEFAULT_MAX_STEPS_PER_KEY;
  // Build the event list: calls before returns at equal times (the permissive choice), unknown
  // outcomes return after everything.
  const events: Array<{ op: number; kind: 'call' | 'return'; time: number }> = [];
  ops.forEach((op, index) => {
    events.push({ op: index, kind: 'call', time: op.callMs });
    events.push({ op: index, kind: 'return', time: op.returnMs ?? Number.POSITIVE_INFINITY });
  });
  events.sort((a, b) => (a.time !== b.time ? a.time - b.time : a.kind === b.kind ? a.op - b.op : a.kind === 'call' ? -1 : 1));
  const head: EventNode = { op: -1, kind: 'head', match: undefined, prev: undefined, next: undefined };
  const callNodes = new Map<number, EventNode>();
  let tail = head;
  for (const event of events) {
    const node: EventNode = { op: event.op, kind: event.kind, match: undefined, prev: tail, next: undefined };
    tail.next = node;
    tail = node;
    if (event.kind === 'call') callNodes.set(event.op, node);
    else {
      const call = callNodes.get(event.op);
      if (call === undefined) throw new Error(`operation ${ops[event.op].id} returns before its call`);
      call.match = node;
    }
  }
  const lift = (call: EventNode): void => {
    call.prev!.next = call.next;
    if (call.next !== undefined) call.next.prev = call.prev;
    const ret = call.match!;
    ret.prev!.next = ret.next;
    if (ret.next !== undefined) ret.next.prev = ret.prev;
  };
  const unlift = (call: EventNode): void => {
    const ret = call.match!;
    ret.prev!.next = ret;
    if (ret.next !== undefined) ret.next.prev = ret;
    call.prev!.next = call;
    if (call.next !== undefined) call.next.prev = call;
  };

  let state = model.init();
  let linearized = new Bits(ops.length);
  const cache = new Set<string>();
  const stack: Array<{ node: EventNode; state: State; linearized: Bits }> = [];
  let entry = head.next;
  let steps = 0;
  let best: number[] = [];
  let stuckAt: number | undefined;
  while (head.next !== undefined) {
    if (entry === undefined) throw new Error('checker: walked off the event list');
    if (entry.kind === 'call') {
      steps++;
      if (steps > maxSteps) return { key, verdict: 'unknown', operations: ops.length, steps };
      const op = ops[entry.op];
      const result = model.step(state, op.input, op.output);
      if (result.ok) {
        const next = linearized.cloneWith(entry.op);
        const cacheKey = next.key() + '|' + model.key(result.state);
        if (!cache.has(cacheKey)) {
          cache.add(cacheKey);
          stack.push({ node: entry, state, linearized });
          state = result.state;
          linearized = next;
          lift(entry);
          entry = head.next;
          continue;
        }
      }
      entry = entry.next;
    } else {
      // A return event of an operation not linearized yet: backtrack.
      if (stack.length >= best.length) {
        best = stack.map((frame) => ops[frame.node.op].id);
        stuckAt = ops[entry.op].id;
      }
      const top = stack.pop();
      if (top === undefined) {
        return { key, verdict: 'illegal', operations: ops.length, steps, longestPrefix: best, stuckAt };
      }
      state = top.state;
      linearized = top.linearized;
      unlift(top.node);
      entry = top.node.next;
    }
  }
  return { key, verdict: 'ok', operations: ops.length, steps };
}

/** Checks a multi-key history, one key at a time. 'illegal' wins over 'unknown' wins over 'ok'. */
export function checkLinearizable<State, Input, Output>(model: Model<State, Input, Output>, ops: readonly Operation<Input, Output>[], options: CheckOptions = {}): CheckResult {
  const byKey = new Map<string, Operation<Input, Output>[]>();
  for (const op of ops) {
    let list = byKey.get(op.key);
    if (list === undefined) byKey.set(op.key, (list = []));
    list.push(op);
  }
  const keys = [...byKey.keys()].sort().map((key) => checkKey(model, byKey.get(key)!, options));
  const verdict: CheckVerdict = keys.some((k) => k.verdict === 'illegal') ? 'illegal' : keys.some((k) => k.verdict === 'unknown') ? 'unknown' : 'ok';
  return { verdict, keys };
}

// ─────────────────────────── a register with read, write and CAS ───────────────────────────

/** An operation on a single-key register; values are strings, null means absent. */
export type RegisterInput =
  | { readonly kind: 'read' }
  | { readonly kind: 'write'; readonly value: string }
  | { readonly kind: 'cas'; readonly from: string | null; readonly to: string };

/**
 * The observed outcome: reads return the value; writes return nothing; a CAS returns whether it
 * succeeded and, when it did not, the value it found (the Txn's failure branch reads the key).
 */
export type RegisterOutput =
  | { readonly kind: 'read'; readonly value: string | null }
  | { readonly kind: 'write' }
  | { readonly kind: 'cas'; readonly succeeded: true }
  | { readonly kind: 'cas'; readonly succeeded: false; readonly value: string | null };

/** The register model (initially absent). */
export const registerModel: Model<string | null, RegisterInput, RegisterOutput> = {
  init: () => null,
  key: (state) => (state === null ? '\u0000' : state),
  step: (state, input, output) => {
    switch (input.kind) {
      case 'read':
        return { ok: output === undefined || (output.kind === 'read' && output.value === state), state };
      case 'write':
        return { ok: true, state: input.value };
      case 'cas': {
        if (output === undefined) return { ok: true, state: state === input.from ? input.to : state };
        if (output.kind !== 'cas') return { ok: false, state };
        if (output.succeeded) return { ok: state === input.from, state: input.to };
        return { ok: state !== input.from && output.value === state, state };
      }
    }
  },
};

/**
 * Drops operations that cannot matter, before the search (values must be unique per write):
 * reads with unknown outcome (they have no effect), and writes / CASes with unknown outcome
 * whose new value nobody ever observed (no read, failed-CAS read or CAS `from` names it). Such an
 * operation, if it took effect, was overwritten by a blind write before anyone looked, so the
 * history is linearizable with it iff it is linearizable without it.
 */
export function pruneRegisterHistory(ops: readonly Operation<RegisterInput, RegisterOutput>[]): Operation<RegisterInput, RegisterOutput>[] {
  const observed = new Set<string | null>();
  for (const op of ops) {
    if (op.output?.kind === 'read') observed.add(op.output.value);
    if (op.output?.kind === 'cas' && !op.output.succeeded) observed.add(op.output.value);
    if (op.input.kind === 'cas') observed.add(op.input.from);
  }
  return ops.filter((op) => {
    if (op.output !== undefined) return true;
    if (op.input.kind === 'read') return false;
    const written = op.input.kind === 'write' ? op.input.value : op.input.to;
    return observed.has(written);
  });
}
