/**
 * The HTTP/2 layer's own cost: a server that answers every gRPC call with the same bytes (a
 * RangeResponse holding one 256-byte value, what etcd's range benchmark reads), served either by
 * Node's HTTP/2 module or by src/util/h2 (the client port's own HTTP/2). Point etcd's benchmark at
 * it and read the server's CPU per request:
 *
 *   node dist/bench/h2-ceiling.js --impl node|js [--port 54379]
 *   etcd-benchmark --endpoints=127.0.0.1:54379 --conns=8 --clients=64 range k --consistency=s --total=100000
 *
 * It prints its own CPU time (user + system) every 5 seconds it was busy.
 */
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { H2Connection } from '../src/util/h2/connection.js';
import { encodeHeaderBlock } from '../src/util/h2/hpack.js';

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 127) {
    out.push((n & 127) | 128);
    n >>>= 7;
  }
  out.push(n);
  return out;
}

/** RangeResponse{header{1,2,3,4}, kvs[{key 'bench-key', create 2, mod 3, version 1, value 256 bytes}], count 1}, length-prefixed. */
function rangeResponseFrame(): Buffer {
  const header = [0x08, 1, 0x10, 2, 0x18, 3, 0x20, 4];
  const key = [...Buffer.from('bench-key')];
  const value = new Array<number>(256).fill(118);
  const kv = [0x0a, ...varint(key.length), ...key, 0x10, 2, 0x18, 3, 0x20, 1, 0x2a, ...varint(value.length), ...value];
  const message = Buffer.from([0x0a, ...varint(header.length), ...header, 0x12, ...varint(kv.length), ...kv, 0x20, 1]);
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, 5);
  return frame;
}

const args = process.argv.slice(2);
const get = (flag: string): string | undefined => {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
};
const impl = get('--impl') ?? 'js';
const port = Number(get('--port') ?? '54379');
const frame = rangeResponseFrame();

if (impl === 'node') {
  const headers = { ':status': 200, 'content-type': 'application/grpc+proto', 'grpc-accept-encoding': 'identity,deflate,gzip', 'grpc-encoding': 'identity' };
  const trailers = { 'grpc-status': '0', 'grpc-message': 'OK' };
  const server = http2.createServer({ settings: { maxConcurrentStreams: 1000 } });
  server.on('stream', (stream) => {
    stream.on('data', () => undefined);
    stream.on('end', () => {
      stream.respond(headers, { waitForTrailers: true, sendDate: false } as http2.ServerStreamResponseOptions);
      stream.on('wantTrailers', () => stream.sendTrailers(trailers));
      stream.end(frame);
    });
  });
  server.listen(port, '127.0.0.1');
} else {
  const headers = encodeHeaderBlock([[':status', '200'], ['content-type', 'application/grpc+proto'], ['grpc-accept-encoding', 'identity,deflate,gzip'], ['grpc-encoding', 'identity']]);
  const trailers = encodeHeaderBlock([['grpc-status', '0'], ['grpc-message', 'OK']]);
  const server = net.createServer((socket) => {
    new H2Connection(socket, {
      maxConcurrentStreams: 1000,
      maxHeaderListBytes: 16_384,
      onStream: (stream) => {
        stream.onEnd = () => {
          stream.respond(headers);
          stream.write(frame);
          stream.end(trailers);
        };
      },
    });
  });
  server.listen(port, '127.0.0.1');
}

let last = process.cpuUsage();
setInterval(() => {
  const now = process.cpuUsage();
  const ms = (now.user - last.user + now.system - last.system) / 1000;
  if (ms > 50) process.stdout.write(`cpu ${ms.toFixed(0)} ms in 5 s\n`);
  last = now;
}, 5000).unref();
process.stdout.write(`listening on ${port} (${impl})\n`);
