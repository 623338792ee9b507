// Goal: a watch delivery encoded straight into wire bytes (each event once, shared by every
// watcher) decodes exactly as the protobufjs encoding of the same response does. Method: encode
// the same events both ways and compare the decoded WatchResponse objects field by field, for
// puts and deletes, with and without prev_kv, leases beyond 2^53, watch id 0, large and negative
// (client-chosen) ids, fragments; and check that one event's bytes are shared, not re-encoded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as grpc from '@grpc/grpc-js';
import { EncodedMessage, encodeEvent, encodeHeader, encodeRangeHeaderWire, encodeWatchEventWire, encodeWatchEventsWire, type PbMessage } from '../../../src/api/codec.js';
import { watchServiceDefinition } from '../../../src/api/watch-service.js';
import { loadServices } from '../../../src/api/proto.js';
import type { Event, KeyValue } from '../../../src/store/mvcc/types.js';

const watch = loadServices().Watch.service.Watch as grpc.MethodDefinition<PbMessage, PbMessage>;
const patched = watchServiceDefinition(loadServices().Watch.service).Watch as grpc.MethodDefinition<PbMessage, unknown>;

const kv = (key: string, value: string, overrides: Partial<KeyValue> = {}): KeyValue => ({
  key: Buffer.from(key), value: Buffer.from(value), createRevision: 3, modRevision: 9, version: 4, lease: 0n, ...overrides,
});

const events: Event[] = [
  { type: 'put', kv: kv('/registry/a', 'addr=10.0.0.1') },
  { type: 'put', kv: kv('/config/x', '', { lease: 2n ** 62n + 5n, version: 1, createRevision: 9 }), prevKv: kv('/config/x', 'old', { modRevision: 8 }) },
  { type: 'delete', kv: kv('/registry/b', '', { createRevision: 0, version: 0 }) },
  { type: 'delete', kv: kv('/registry/c', '', { createRevision: 0, version: 0 }), prevKv: kv('/registry/c', 'gone') },
];
const header = { clusterId: 2n ** 64n - 3n, memberId: 12345678901234567n, revision: 9, raftTerm: 7 };

function decodeBoth(watchId: bigint, list: readonly Event[], fragment: boolean): { wire: PbMessage; reference: PbMessage } {
  const bytes = patched.responseSerialize(encodeWatchEventsWire(encodeRangeHeaderWire(header), watchId, list, fragment));
  const referenceObject: PbMessage = { header: encodeHeader(header), watch_id: watchId.toString(), events: list.map(encodeEvent) };
  if (fragment) referenceObject.fragment = true;
  const reference = watch.responseDeserialize(watch.responseSerialize(referenceObject));
  return { wire: watch.responseDeserialize(bytes), reference };
}

for (const watchId of [0n, 1n, 300n, 2n ** 53n + 1n, -5n]) {
  for (const fragment of [false, true]) {
    test(`watch id ${watchId}${fragment ? ', fragment' : ''}: wire bytes decode as the protobufjs encoding does`, () => {
      const { wire, reference } = decodeBoth(watchId, events, fragment);
      assert.deepEqual(wire, reference);
      assert.equal((wire.events as PbMessage[]).length, events.length);
    });
  }
}

test('an event is encoded once and its bytes shared by every response that carries it', () => {
  const event: Event = { type: 'put', kv: kv('/k', 'v') };
  assert.equal(encodeWatchEventWire(event), encodeWatchEventWire(event));
  const first = encodeWatchEventsWire(encodeRangeHeaderWire(header), 1n, [event], false);
  const second = encodeWatchEventsWire(encodeRangeHeaderWire(header), 2n, [event], false);
  assert.ok(first instanceof EncodedMessage && second instanceof EncodedMessage);
  assert.notDeepEqual(first.take(), second.take(), 'the watch ids differ');
});

test('objects (control responses) still go through protobufjs under the patched definition', () => {
  const control: PbMessage = { header: encodeHeader(header), watch_id: '3', created: true };
  assert.deepEqual(watch.responseDeserialize(patched.responseSerialize(control)), watch.responseDeserialize(watch.responseSerialize(control)));
});

test('responses that carry the very same events array (watchers that caught up together) decode as those of fresh copies, interleaved with other arrays', () => {
  const shared: Event[] = [...events];
  const other: Event[] = [events[0]];
  const lists = [shared, shared, shared, other, shared, shared, other, other];
  // All encoded first, in this order (the codec remembers the array it saw last), then checked.
  const encoded = lists.map((list, index) => patched.responseSerialize(encodeWatchEventsWire(encodeRangeHeaderWire(header), BigInt(index + 1), list, false)));
  for (const [index, list] of lists.entries()) {
    assert.deepEqual(watch.responseDeserialize(encoded[index]), decodeBoth(BigInt(index + 1), [...list], false).reference, `response ${index}`);
  }
});
