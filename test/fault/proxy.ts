/**
 * A userspace TCP proxy that sits in front of one member's peer port, so the fault injector can
 * delay and "lose" peer traffic per link (this machine's kernel has no sch_netem). Every other
 * member's peer URL for this member points at the proxy; the proxy tells links apart by the
 * connecting side's address (each member has its own address in its own network namespace).
 *
 * Loss on a TCP stream looks to the application like a retransmission stall, so a "lost" chunk
 * is held back for a retransmission timeout (order is kept), and now and then a connection is
 * reset outright. `block` refuses and cuts every connection of a link (used for partitions in the
 * loopback fallback, where there are no per-member addresses for iptables).
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';

/** Link impairment, per direction. */
export interface LinkFault {
  /** Added one-way delay in ms. */
  readonly delayMs: number;
  /** Uniform extra delay in [0, jitterMs). */
  readonly jitterMs: number;
  /** Probability that a chunk is "lost" (held back for a retransmission timeout). */
  readonly lossRate: number;
  /** Probability per chunk that the connection is reset. */
  readonly resetRate: number;
}

/** A retransmission timeout as Linux uses at minimum (200 ms), doubled at random. */
const RETRANSMIT_MS = [200, 400, 800] as const;
/** Bytes buffered per direction before reading from the source pauses. */
const QUEUED_BYTES_MAX = 4 * 1024 * 1024;

/** A proxy in front of one member's peer port. */
export class PeerProxy {
  readonly #server: Server;
  readonly #target: { host: string; port: number };
  /** Maps a connecting address to a link name (the source member's name). */
  readonly #sourceName: (address: string) => string;
  readonly #random: () => number;
  /** Faults per source name, applied to both directions of that link. */
  readonly #faults = new Map<string, LinkFault>();
  readonly #blocked = new Set<string>();
  readonly #connections = new Set<{ source: string; client: Socket; upstream: Socket }>();
  #port = 0;

  constructor(options: { target: { host: string; port: number }; sourceName: (address: string) => string; random: () => number }) {
    this.#target = options.target;
    this.#sourceName = options.sourceName;
    this.#random = options.random;
    this.#server = createServer((socket) => this.#accept(socket));
  }

  /** Listens on host:port (0 picks a port); returns the port. */
  async listen(host: string, port = 0): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => resolve());
    });
    const address = this.#server.address();
    this.#port = typeof address === 'object' && address !== null ? address.port : 0;
    return this.#port;
  }

  get port(): number { return this.#port; }

  /** Sets (or with undefined clears) the impairment of the link from `source`. */
  setFault(source: string, fault: LinkFault | undefined): void {
    if (fault === undefined) this.#faults.delete(source);
    else this.#faults.set(source, fault);
  }

  /** Blocks or unblocks the link from `source`; blocking cuts its open connections. */
  setBlocked(source: string, blocked: 'blocked' | 'open'): void {
    if (blocked === 'blocked') {
      this.#blocked.add(source);
      for (const c of this.#connections) {
        if (c.source === source) {
          c.client.destroy();
          c.upstream.destroy();
        }
      }
    } else this.#blocked.delete(source);
  }

  /** Clears every fault and block. */
  heal(): void {
    this.#faults.clear();
    this.#blocked.clear();
  }

  async close(): Promise<void> {
    for (const c of this.#connections) {
      c.client.destroy();
      c.upstream.destroy();
    }
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: Socket): void {
    const source = this.#sourceName(client.remoteAddress ?? '');
    if (this.#blocked.has(source)) {
      client.destroy();
      return;
    }
    client.setNoDelay(true);
    const upstream = createConnection({ host: this.#target.host, port: this.#target.port });
    upstream.setNoDelay(true);
    const entry = { source, client, upstream };
    this.#connections.add(entry);
    const closeBoth = (): void => {
      this.#connections.delete(entry);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', closeBoth);
    upstream.on('error', closeBoth);
    client.on('close', closeBoth);
    upstream.on('close', closeBoth);
    this.#pipe({ from: client, to: upstream, source, closeBoth });
    this.#pipe({ from: upstream, to: client, source, closeBoth });
  }

  /**
   * Forwards chunks in order, each no earlier than its arrival + the link's delay. One queue and
   * one timer per direction: a timer per chunk reordered the stream (Node counts a timer from the
   * loop's cached clock, so a chunk queued behind another in the same pass could fire first).
   */
  #pipe(options: { from: Socket; to: Socket; source: string; closeBoth: () => void }): void {
    const { from, to, source, closeBoth } = options;
    const queue: Array<{ readonly chunk: Buffer; readonly at: number }> = [];
    let queuedBytes = 0;
    let timer: NodeJS.Timeout | undefined;
    let ended = false;
    const pump = (): void => {
      timer = undefined;
      const now = Date.now();
      while (queue.length > 0 && queue[0].at <= now) {
        const { chunk } = queue.shift() as { chunk: Buffer };
        queuedBytes -= chunk.length;
        if (!to.destroyed) to.write(chunk);
      }
      if (queuedBytes <= QUEUED_BYTES_MAX && from.isPaused()) from.resume();
      if (queue.length > 0) timer = setTimeout(pump, queue[0].at - now);
      else if (ended) to.end();
    };
    from.on('data', (chunk: Buffer) => {
      const fault = this.#faults.get(source);
      if (fault === undefined && queue.length === 0) {
        if (!to.destroyed) to.write(chunk);
        return;
      }
      if (fault !== undefined && this.#random() < fault.resetRate) {
        closeBoth();
        return;
      }
      let delay = fault === undefined ? 0 : fault.delayMs + this.#random() * fault.jitterMs;
      if (fault !== undefined && this.#random() < fault.lossRate) delay += RETRANSMIT_MS[Math.floor(this.#random() * RETRANSMIT_MS.length)];
      const now = Date.now();
      // Never before the chunk ahead of it: delivery times only grow, so the head is due first.
      const at = Math.max(now + delay, queue.length > 0 ? queue[queue.length - 1].at : 0);
      queue.push({ chunk, at });
      queuedBytes += chunk.length;
      if (queuedBytes > QUEUED_BYTES_MAX) from.pause();
      timer ??= setTimeout(pump, Math.max(0, queue[0].at - now));
    });
    from.on('end', () => {
      ended = true;
      if (queue.length === 0) to.end();
    });
    from.on('close', () => {
      if (timer !== undefined && to.destroyed) clearTimeout(timer);
    });
  }
}
