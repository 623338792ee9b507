import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CLIENT_ALPN, PEER_ALPN, chooseAlpn } from '../../../src/server/tls.js';

test('a gRPC client offering only h2 gets h2 on the client port', () => {
  assert.equal(chooseAlpn(['h2'], CLIENT_ALPN), 'h2');
});

test('a client offering h2 and http/1.1 (curl, browsers) gets http/1.1, where the JSON gateway answers', () => {
  assert.equal(chooseAlpn(['h2', 'http/1.1'], CLIENT_ALPN), 'http/1.1');
  assert.equal(chooseAlpn(['http/1.1'], CLIENT_ALPN), 'http/1.1');
});

test('no common protocol: none chosen (the connection is sniffed)', () => {
  assert.equal(chooseAlpn(['spdy/3'], CLIENT_ALPN), undefined);
  assert.equal(chooseAlpn([], CLIENT_ALPN), undefined);
});

test('the peer port (gRPC only) picks h2 even from a client that also offers http/1.1', () => {
  assert.equal(chooseAlpn(['h2', 'http/1.1'], PEER_ALPN), 'h2');
});
