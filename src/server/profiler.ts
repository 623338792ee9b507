/**
 * On-demand profiles of this process through node:inspector (no restart, no flags): a CPU profile
 * over a number of seconds (V8's .cpuprofile JSON: Chrome DevTools, speedscope) and a heap
 * snapshot written to a temporary file (.heapsnapshot). Served behind --enable-pprof, at
 * /debug/pprof/profile and /debug/pprof/heap (src/api/http-endpoints.ts).
 */
import { Session } from 'node:inspector';
import { createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function post<T>(session: Session, method: string, params?: object): Promise<T> {
  return new Promise((resolve, reject) => {
    session.post(method, params ?? {}, (error: Error | null, result?: unknown) => (error === null ? resolve(result as T) : reject(error)));
  });
}

/** A CPU profile of this process over `seconds`, as .cpuprofile JSON text. */
export async function cpuProfile(seconds: number): Promise<string> {
  const session = new Session();
  session.connect();
  try {
    await post(session, 'Profiler.enable');
    await post(session, 'Profiler.start');
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    const { profile } = await post<{ profile: unknown }>(session, 'Profiler.stop');
    return JSON.stringify(profile);
  } finally {
    session.disconnect();
  }
}

/** Writes a heap snapshot of this process to a new temporary file; returns its path. */
export async function heapSnapshot(): Promise<string> {
  const path = join(tmpdir(), `kvd-${process.pid}-${Date.now()}.heapsnapshot`);
  const out = createWriteStream(path);
  const session = new Session();
  session.connect();
  try {
    session.on('HeapProfiler.addHeapSnapshotChunk', (message: { params: { chunk: string } }) => {
      out.write(message.params.chunk);
    });
    await post(session, 'HeapProfiler.takeHeapSnapshot', { reportProgress: false });
  } finally {
    session.disconnect();
    await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())));
  }
  return path;
}
