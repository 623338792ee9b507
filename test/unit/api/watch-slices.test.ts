// Goal: a watch response of many events (a revision that deleted a million keys) is encoded a
// slice per turn of the event loop instead of in one pass that held the member's loop for most of
// a second, and nothing else changes: the bytes are those of the one-pass encoding, and responses
// queued behind it on the stream go out after it, in order.
// Method: a watch stream on a fake call and a fake hub, encoding slices of 100 events; the hub
// delivers 1,000 events, then one more at the next revision; a callback rescheduled on every turn
// counts the turns until both responses are written. Before slicing both were written at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { encodeRangeHeaderWire, encodeWatchEventsWire, type EncodedMessage, type PbMessage } from '../../../src/api/codec.js';
import { createWatchService, watchServiceDefinition } from '../../../src/api/watch-service.js';
import { loadServices } from '../../../src/api/proto.js';
import type { WatchSink, WatcherHandle } from '../../../src/api/backend.js';
import type { Event } from '../../../src/store/mvcc/types.js';

const patched = watchServiceDefinition(loadServices().Watch.service).Watch as grpc.MethodDefinition<PbMessage, unknown>;
const header = { clusterId: 7n, memberId: 9n, revision: 6, raftTerm: 2 };

class FakeCall extends EventEmitter {
  readonly metadata = new grpc.Metadata();
  readonly written: unknown[] = [];
  write(response: unknown): boolean {
    this.written.push(response);
    return true;
  }
  pause(): void {}
  resume(): void {}
  end(): void {}
  getAuthContext(): undefined {
    return undefined;
  }
}

const deleted = (i: number, revision: number): Event => ({
  type: 'delete',
  kv: { key: Buffer.from(`k/${String(i).padStart(5, '0')}`), value: Buffer.alloc(0), createRevision: 0, modRevision: revision, version: 0, lease: 0n },
});

test('a large watch response is encoded in slices, byte for byte, and what follows waits for it', async () => {
  let sink: WatchSink | undefined;
  const handles: WatcherHandle[] = [];
  const backend = {
    openWatchStream: (opened: WatchSink) => {
      sink = opened;
      return { watch: (handle: WatcherHandle) => handles.push(handle), cancel: () => {}, requestProgress: () => {}, requestProgressAll: () => {}, writable: () => {}, close: () => {} };
    },
    header: () => header,
  };
  const unexpected: unknown[] = [];
  const service = createWatchService({ backend, fragmentBytesMax: 1 << 30, progressIntervalMs: 60_000, defaultRequestTimeoutMs: 1000, onUnexpectedError: (error) => unexpected.push(error), encodeSliceEvents: 100 });
  const call = new FakeCall();
  (service.Watch as (call: unknown) => void)(call);
  call.emit('data', { request_union: 'create_request', create_request: { key: Buffer.from('k/'), range_end: Buffer.from('k0') } });
  assert.equal(call.written.length, 1, 'the created response');
  assert.ok(sink !== undefined && handles.length === 1);

  const large = Array.from({ length: 1000 }, (_, i) => deleted(i, 5));
  const next = [deleted(0, 6)];
  assert.equal(sink.deliver({ type: 'events', watcher: handles[0], revision: 5, events: large }), 'accepted');
  assert.equal(sink.deliver({ type: 'events', watcher: handles[0], revision: 6, events: next }), 'accepted');
  assert.equal(call.written.length, 1, 'nothing more is written before the large response is encoded');
  let turns = 0;
  while (call.written.length < 3 && turns < 1000) {
    await new Promise((resolve) => setImmediate(resolve));
    turns += 1;
  }
  assert.equal(call.written.length, 3, 'both responses written');
  // One slice per turn; the first is encoded when the response is queued.
  assert.ok(turns >= 1000 / 100 - 2, `the event loop turned while encoding (${turns} turns)`);
  const bytes = (response: unknown): Buffer => patched.responseSerialize(response);
  assert.deepEqual(bytes(call.written[1]), bytes(encodeWatchEventsWire(encodeRangeHeaderWire(header, 5), 0n, large, false) as EncodedMessage), 'the same bytes as one pass');
  const decoded = loadServices().Watch.service.Watch.responseDeserialize(bytes(call.written[2])) as PbMessage;
  assert.equal((decoded.header as PbMessage).revision, '6', 'the next revision after it');
  assert.deepEqual(unexpected, []);
  call.emit('close');
});
