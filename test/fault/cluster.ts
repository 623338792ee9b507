/**
 * A kvd cluster for fault injection. In 'netns' mode each member runs in its own network
 * namespace with its own address on a bridge this class creates (10.77.<net>.0/24; the host side
 * of the bridge is .1, member i is .(10+i)); in 'loopback' mode (no namespaces available) every
 * member listens on 127.0.0.1.
 *
 * Peer traffic always goes through one {@link PeerProxy} per member (in the root namespace), so
 * links can be delayed and made lossy. Partitions in 'netns' mode are iptables DROP rules inside
 * the members' namespaces (real packet loss: connections stall, TCP retransmits); in 'loopback'
 * mode the proxy can only tell links apart by destination, so a partition degrades to cutting
 * everything *into* the isolated members. Processes can be killed (-9), paused (SIGSTOP),
 * resumed and restarted. Everything created (namespaces, bridge, veths, rules, processes) is
 * removed by {@link FaultCluster.destroy}, which is also registered for process exit.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync, type WriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { KVD_BIN, call, closeClients, freePort, waitFor, type StatusResponse } from '../integration/harness.js';
import { PeerProxy, type LinkFault } from './proxy.js';

/** How members are separated. */
export type NetworkMode = 'netns' | 'loopback';

/** One member. */
export interface FaultMember {
  readonly name: string;
  readonly index: number;
  /** The member's own address (namespace address or 127.0.0.1). */
  readonly host: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly proxy: PeerProxy;
  readonly namespace: string | undefined;
  readonly dataDir: string;
  readonly logPath: string;
  process: ChildProcess | undefined;
  state: 'running' | 'paused' | 'stopped';
  /** The gRPC endpoint clients use. */
  readonly endpoint: string;
}

/** Options of {@link FaultCluster.start}. */
export interface FaultClusterOptions {
  readonly size: number;
  readonly mode: NetworkMode;
  /** Where data dirs and logs go. */
  readonly root: string;
  readonly heartbeatMs: number;
  readonly electionMs: number;
  readonly snapshotCount: number;
  readonly random: () => number;
  /** Called when a member exits without being killed by us. */
  readonly onUnexpectedExit: (member: string, code: number | null, signal: string | null) => void;
}

/** Whether `ip netns add` works here (root and a kernel with namespaces). */
export function namespacesAvailable(): boolean {
  const probe = `kvfprobe${process.pid % 100000}`;
  try {
    execFileSync('ip', ['netns', 'add', probe], { stdio: 'ignore' });
    execFileSync('ip', ['netns', 'del', probe], { stdio: 'ignore' });
    return true;
  } catch (error: unknown) {
    void error; // any failure means: not available
    return false;
  }
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function inNamespace(namespace: string, ...args: string[]): void {
  execFileSync('ip', ['netns', 'exec', namespace, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Picks a /24 under 10.77 that no interface here uses yet. */
function pickSubnet(): number {
  const used = execFileSync('ip', ['-4', '-o', 'addr', 'show'], { encoding: 'utf8' });
  for (let attempt = 0; attempt < 250; attempt++) {
    const candidate = 1 + ((process.pid + attempt * 7) % 250);
    if (!used.includes(`10.77.${candidate}.`)) return candidate;
  }
  throw new Error('no free 10.77.x.0/24 subnet');
}

/** A cluster of real kvd processes with network and process faults. */
export class FaultCluster {
  readonly members: FaultMember[];
  readonly options: FaultClusterOptions;
  readonly #subnet: number | undefined;
  readonly #bridge: string | undefined;
  readonly #logs = new Map<string, WriteStream>();
  #destroyed = false;
  readonly #exitHook = (): void => this.#destroySync();

  private constructor(options: FaultClusterOptions, members: FaultMember[], subnet: number | undefined) {
    this.options = options;
    this.members = members;
    this.#subnet = subnet;
    this.#bridge = subnet === undefined ? undefined : `kvf${subnet}br`;
    process.once('exit', this.#exitHook);
  }

  /** Creates the network, the proxies and the processes; waits for nothing. */
  static async start(options: FaultClusterOptions): Promise<FaultCluster> {
    mkdirSync(options.root, { recursive: true });
    const subnet = options.mode === 'netns' ? pickSubnet() : undefined;
    const hostSide = subnet === undefined ? '127.0.0.1' : `10.77.${subnet}.1`;
    const members: FaultMember[] = [];
    const nameOf = (address: string): string => {
      if (subnet === undefined) return 'any';
      const last = Number(address.replace(/^::ffff:/, '').split('.')[3]);
      return `m${last - 10}`;
    };
    for (let i = 1; i <= options.size; i++) {
      const host = subnet === undefined ? '127.0.0.1' : `10.77.${subnet}.${10 + i}`;
      const clientPort = subnet === undefined ? await freePort() : 2379;
      const peerPort = subnet === undefined ? await freePort() : 2380;
      const proxy = new PeerProxy({ target: { host, port: peerPort }, sourceName: nameOf, random: options.random });
      members.push({
        name: `m${i}`, index: i, host, clientPort, peerPort, proxy,
        namespace: subnet === undefined ? undefined : `kvf${subnet}m${i}`,
        dataDir: join(options.root, `m${i}`), logPath: join(options.root, `m${i}.log`),
        process: undefined, state: 'stopped', endpoint: `${host}:${clientPort}`,
      });
    }
    const cluster = new FaultCluster(options, members, subnet);
    try {
      if (subnet !== undefined) cluster.#createNetwork(subnet);
      for (const member of members) await member.proxy.listen(hostSide);
      // The initial cluster string depends on the proxy ports: rebuild it now they are bound.
      cluster.#initialClusterResolved = members.map((m) => `${m.name}=http://${hostSide}:${m.proxy.port}`).join(',');
      for (const member of members) cluster.startMember(member.name);
    } catch (error: unknown) {
      await cluster.destroy();
      throw error;
    }
    return cluster;
  }

  /** --initial-cluster, known once the proxies are bound. */
  #initialClusterResolved = '';

  #createNetwork(subnet: number): void {
    const bridge = this.#bridge as string;
    ip('link', 'add', bridge, 'type', 'bridge');
    ip('addr', 'add', `10.77.${subnet}.1/24`, 'dev', bridge);
    ip('link', 'set', bridge, 'up');
    for (const member of this.members) {
      const namespace = member.namespace as string;
      const hostEnd = `kvf${subnet}h${member.index}`;
      const memberEnd = `kvf${subnet}p${member.index}`;
      ip('netns', 'add', namespace);
      ip('link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', memberEnd);
      ip('link', 'set', memberEnd, 'netns', namespace);
      ip('link', 'set', hostEnd, 'master', bridge);
      ip('link', 'set', hostEnd, 'up');
      inNamespace(namespace, 'ip', 'link', 'set', 'lo', 'up');
      inNamespace(namespace, 'ip', 'addr', 'add', `${member.host}/24`, 'dev', memberEnd);
      inNamespace(namespace, 'ip', 'link', 'set', memberEnd, 'up');
    }
  }

  get endpoints(): string[] { return this.members.map((m) => m.endpoint); }

  /** The network this cluster uses, for the report. */
  describeNetwork(): string {
    return this.#subnet === undefined
      ? 'loopback 127.0.0.1 (no namespaces): partitions cut only traffic into the isolated members, at the proxies'
      : `namespaces kvf${this.#subnet}m1..m${this.members.length} on bridge ${this.#bridge} 10.77.${this.#subnet}.0/24, peer traffic through proxies on 10.77.${this.#subnet}.1, partitions by iptables DROP`;
  }

  member(name: string): FaultMember {
    const member = this.members.find((m) => m.name === name);
    if (member === undefined) throw new Error(`no member ${name}`);
    return member;
  }

  /** Starts (or restarts) a member with the same command line. */
  startMember(name: string): void {
    const member = this.member(name);
    if (member.process !== undefined) throw new Error(`${name} is running`);
    const args = [
      KVD_BIN,
      '--name', member.name,
      '--data-dir', member.dataDir,
      '--listen-client-urls', `http://${member.host}:${member.clientPort}`,
      '--advertise-client-urls', `http://${member.host}:${member.clientPort}`,
      '--listen-peer-urls', `http://${member.host}:${member.peerPort}`,
      '--initial-advertise-peer-urls', `http://${this.#subnet === undefined ? '127.0.0.1' : `10.77.${this.#subnet}.1`}:${member.proxy.port}`,
      '--initial-cluster', this.#initialClusterResolved,
      '--initial-cluster-token', 'kvd-fault',
      '--initial-cluster-state', 'new',
      '--heartbeat-interval', String(this.options.heartbeatMs),
      '--election-timeout', String(this.options.electionMs),
      '--snapshot-count', String(this.options.snapshotCount),
      '--log-level', 'info',
    ];
    let log = this.#logs.get(name);
    if (log === undefined) {
      log = createWriteStream(member.logPath, { flags: 'a' });
      this.#logs.set(name, log);
    }
    const child = member.namespace === undefined
      ? spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('ip', ['netns', 'exec', member.namespace, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    child.on('exit', (code, signal) => {
      if (member.process !== child) return;
      member.process = undefined;
      member.state = 'stopped';
      if (!this.#destroyed) this.options.onUnexpectedExit(name, code, signal);
    });
    member.process = child;
    member.state = 'running';
  }

  /** kill -9 and wait for the exit. */
  async kill(name: string): Promise<void> {
    const member = this.member(name);
    const child = member.process;
    if (child === undefined) return;
    member.process = undefined;
    member.state = 'stopped';
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    child.kill('SIGKILL');
    await exited;
  }

  /** SIGSTOP. */
  pause(name: string): void {
    const member = this.member(name);
    if (member.process === undefined || member.state !== 'running') return;
    member.process.kill('SIGSTOP');
    member.state = 'paused';
  }

  /** SIGCONT. */
  resume(name: string): void {
    const member = this.member(name);
    if (member.process === undefined || member.state !== 'paused') return;
    member.process.kill('SIGCONT');
    member.state = 'running';
  }

  /**
   * Cuts every link between members of different groups (members in no group keep all links).
   * 'netns': iptables DROP in both namespaces, both directions. 'loopback': the proxies of the
   * members outside the largest group refuse and cut everything (inbound isolation only).
   */
  partition(groups: readonly (readonly string[])[]): void {
    const groupOf = new Map<string, number>();
    groups.forEach((group, index) => group.forEach((name) => groupOf.set(name, index)));
    if (this.#subnet === undefined) {
      // Loopback: no per-link control; cut everything into the members outside the largest group.
      const largest = [...groups].sort((a, b) => b.length - a.length)[0] ?? [];
      for (const member of this.members) {
        if (groupOf.has(member.name) && !largest.includes(member.name)) member.proxy.setBlocked('any', 'blocked');
      }
      return;
    }
    const cut: Array<[FaultMember, FaultMember]> = [];
    for (const a of this.members) {
      for (const b of this.members) {
        const ga = groupOf.get(a.name);
        const gb = groupOf.get(b.name);
        if (a.index < b.index && ga !== undefined && gb !== undefined && ga !== gb) cut.push([a, b]);
      }
    }
    this.cutLinks(cut.map(([a, b]) => [a.name, b.name]));
  }

  /**
   * Cuts the given links (both directions). In loopback mode only the first member of each pair
   * loses its inbound traffic (from everyone): bridge and ring shapes degrade to that.
   */
  cutLinks(links: readonly (readonly [string, string])[]): void {
    for (const [aName, bName] of links) {
      const a = this.member(aName);
      const b = this.member(bName);
      if (this.#subnet === undefined) {
        a.proxy.setBlocked('any', 'blocked');
        continue;
      }
      for (const [from, to] of [[a, b], [b, a]] as const) {
        const hostSide = `10.77.${this.#subnet}.1`;
        inNamespace(from.namespace as string, 'iptables', '-A', 'OUTPUT', '-p', 'tcp', '-d', hostSide, '--dport', String(to.proxy.port), '-j', 'DROP');
        inNamespace(from.namespace as string, 'iptables', '-A', 'INPUT', '-p', 'tcp', '-s', hostSide, '--sport', String(to.proxy.port), '-j', 'DROP');
      }
    }
  }

  /** Impairs the peer traffic between `a` and `b` (both directions), or clears it. */
  setLinkFault(a: string, b: string, fault: LinkFault | undefined): void {
    const source = (name: string): string => (this.#subnet === undefined ? 'any' : name);
    this.member(b).proxy.setFault(source(a), fault);
    this.member(a).proxy.setFault(source(b), fault);
  }

  /** Removes every partition rule and link impairment. */
  healNetwork(): void {
    for (const member of this.members) {
      member.proxy.heal();
      if (member.namespace !== undefined) {
        inNamespace(member.namespace, 'iptables', '-F', 'OUTPUT');
        inNamespace(member.namespace, 'iptables', '-F', 'INPUT');
      }
    }
  }

  /** The leader as seen by the running members if they agree, else undefined. */
  async leader(options: { timeoutMs: number }): Promise<string | undefined> {
    const running = this.members.filter((m) => m.state === 'running');
    const statuses = await Promise.all(running.map((m) => call<StatusResponse>(m.endpoint, 'Maintenance', 'Status', {}, { timeoutMs: options.timeoutMs }).catch(() => undefined)));
    const leaders = new Set(statuses.map((s) => s?.leader));
    if (leaders.size !== 1 || statuses[0] === undefined || statuses[0].leader === '0') return undefined;
    const index = statuses.findIndex((s) => s?.header.member_id === statuses[0]!.leader);
    return index >= 0 ? running[index].name : undefined;
  }

  /** Waits until every running member agrees on a leader. */
  async waitForLeader(options: { timeoutMs: number }): Promise<string> {
    return waitFor('a leader agreed by every running member', () => this.leader({ timeoutMs: 1000 }), { timeoutMs: options.timeoutMs, intervalMs: 100 });
  }

  /** The last `lines` lines of a member's log. */
  logTail(name: string, lines = 30): string {
    try {
      return readFileSync(this.member(name).logPath, 'utf8').split('\n').slice(-lines).join('\n');
    } catch (error: unknown) {
      return `(no log: ${String(error)})`;
    }
  }

  /** Kills every process, closes proxies, removes the network; keeps or removes the data. */
  async destroy(options: { keepData?: boolean } = {}): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const member of this.members) {
      if (member.process !== undefined) {
        if (member.state === 'paused') member.process.kill('SIGCONT');
        await this.kill(member.name);
      }
    }
    await Promise.all(this.members.map((m) => m.proxy.close().catch(() => undefined)));
    for (const log of this.#logs.values()) log.end();
    closeClients();
    this.#removeNetwork();
    process.removeListener('exit', this.#exitHook);
    if (options.keepData !== true) await rm(this.options.root, { recursive: true, force: true });
  }

  #destroySync(): void {
    for (const member of this.members) {
      try {
        member.process?.kill('SIGKILL');
      } catch (error: unknown) {
        void error; // already gone
      }
    }
    this.#removeNetwork();
  }

  #removeNetwork(): void {
    if (this.#subnet === undefined) return;
    for (const member of this.members) {
      try {
        ip('netns', 'del', member.namespace as string);
      } catch (error: unknown) {
        void error; // already removed (the veth pair goes with the namespace)
      }
    }
    try {
      ip('link', 'del', this.#bridge as string);
    } catch (error: unknown) {
      void error; // already removed
    }
  }
}
