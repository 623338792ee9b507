/**
 * Raw HTTP/2 requests for the api tests (Node's HTTP/2 client): one gRPC-shaped request with the
 * body whole or in parts written 20 ms apart (separate DATA frames), and length-prefixed framing.
 */
import * as http2 from 'node:http2';

/** One raw HTTP/2 request: returns the response headers, trailers and body. */
export function rawCall(port: number, path: string, body: Buffer | Buffer[], extraHeaders: http2.OutgoingHttpHeaders = {}): Promise<{ headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const request = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...extraHeaders });
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    request.on('response', (received) => { headers = received; });
    request.on('trailers', (received) => { trailers = received; });
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      session.close();
      resolve({ headers, trailers, body: Buffer.concat(chunks) });
    });
    request.on('error', reject);
    if (Buffer.isBuffer(body)) {
      request.end(body);
      return;
    }
    // Parts written 20 ms apart: separate DATA frames.
    const parts = [...body];
    const next = (): void => {
      const part = parts.shift();
      if (part === undefined) request.end();
      else request.write(part, () => setTimeout(next, 20));
    };
    next();
  });
}

/** A gRPC length-prefixed message (flag byte, 4-byte big-endian length). */
export function framed(message: Buffer, compressed = 0): Buffer {
  const prefix = Buffer.alloc(5);
  prefix[0] = compressed;
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}
