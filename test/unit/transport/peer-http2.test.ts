// Goal: the peer transport on kvd's own HTTP/2 (the default, `--peer-http2 kvd`) and on grpc-js
// (`--peer-http2 node`) work together in either direction, so a cluster can be upgraded one member
// at a time: every message type in order, a 6 MiB append, member calls, a restart.
// Method: real transports on 127.0.0.1 port 0, one on each implementation (the other transport
// tests run kvd's against kvd's).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Message } from '../../../src/raft/types.js';
import type { PeerHttp2 } from '../../../src/transport/service.js';
import { ID_A, ID_B, entries, everyMessage } from './messages.js';
import { mesh, startMember, stopAll, waitFor } from './harness.js';

const PAIRS: ReadonlyArray<readonly [PeerHttp2, PeerHttp2]> = [['kvd', 'node'], ['node', 'kvd']];
const text = (bytes: Uint8Array): string => Buffer.from(bytes).toString('utf8');

for (const [first, second] of PAIRS) {
  test(`${first} and ${second} HTTP/2 members exchange every message type, a 6 MiB append and member calls`, async () => {
    const onCall = async (_from: bigint, kind: string, payload: Uint8Array): Promise<Uint8Array> => new Uint8Array(Buffer.from(`${kind}:${text(payload)}`));
    const a = await startMember(ID_A, { http2: first, onCall });
    const b = await startMember(ID_B, { http2: second, onCall });
    try {
      mesh([a, b]);
      const toB = everyMessage(ID_A, ID_B).filter((m) => m.type !== 'snapshot');
      const toA = everyMessage(ID_B, ID_A).filter((m) => m.type !== 'snapshot');
      a.transport.send(toB);
      b.transport.send(toA);
      await waitFor(() => b.received.length === toB.length && a.received.length === toA.length, 'delivery');
      assert.deepStrictEqual(b.received, toB);
      assert.deepStrictEqual(a.received, toA);

      const append: Message = { type: 'append', from: ID_A, to: ID_B, term: 7, logTerm: 7, index: 9, commit: 9, entries: entries(1536, 4096, 10) };
      a.transport.send([append]);
      await waitFor(() => b.received.length === toB.length + 1, '6 MiB append', 20_000);
      assert.deepStrictEqual(b.received.at(-1), append);

      const deadlineMs = Date.now() + 5_000;
      const answers = await Promise.all([
        a.transport.call(ID_B, 'echo', new Uint8Array(Buffer.from('from a')), { deadlineMs }),
        b.transport.call(ID_A, 'echo', new Uint8Array(Buffer.from('from b')), { deadlineMs }),
      ]);
      assert.deepStrictEqual(answers.map(text), ['echo:from a', 'echo:from b']);
    } finally {
      await stopAll([a, b]);
    }
  });

  test(`a ${first} HTTP/2 member reconnects to a restarted ${second} HTTP/2 member`, async () => {
    const a = await startMember(ID_A, { http2: first });
    let b = await startMember(ID_B, { http2: second });
    try {
      mesh([a, b]);
      a.transport.send([{ type: 'heartbeat', from: ID_A, to: ID_B, term: 1, commit: 1, context: null }]);
      await waitFor(() => b.received.length === 1, 'first delivery');
      const url = b.url;
      await b.transport.stop();
      await waitFor(() => !a.transport.peerStatus(ID_B).connected, 'disconnect noticed');
      b = await startMember(ID_B, { http2: second, listenUrl: url });
      let commit = 2;
      await waitFor(() => {
        a.transport.send([{ type: 'heartbeat', from: ID_A, to: ID_B, term: 1, commit: commit++, context: null }]);
        return b.received.length > 0;
      }, 'delivery after restart');
    } finally {
      await stopAll([a, b]);
    }
  });
}
