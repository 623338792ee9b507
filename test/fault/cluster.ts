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
 *
 * Membership (the membership nemesis, membership.ts): {@link FaultCluster.prepareMember} makes a
 * slot for a new member exactly like the initial ones (next index, its own namespace and address
 * in 'netns' mode or fresh loopback ports, a peer proxy, an empty data dir), and
 * {@link FaultCluster.startJoining} starts it with `--initial-cluster-state existing`. Each
 * member has a {@link MemberLifecycle}: only 'joining' and 'active' members are fault targets
 * and are restarted after faults; a 'removed' member is never started again, and its exit with
 * code 0 (kvd stops by itself once it learns it was removed) is expected, not reported.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync, type WriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { KVD_BIN, call, closeClients, freePort, waitFor, type StatusResponse } from '../integration/harness.js';
import { PeerProxy, type LinkFault } from './proxy.js';

/** How members are separated. */
export type NetworkMode = 'netns' | 'loopback';

/**
 * Where a member is in its life, as the harness tracks it:
 * - 'pending': a slot prepared for an add; no process yet (never started by heals);
 * - 'joining': added and started, not yet a voter the workloads use;
 * - 'active': a voter;
 * - 'leaving': a removal is in flight (not restarted by heals until the outcome is known);
 * - 'removed': removed from the cluster, or a slot whose add was abandoned; never started again.
 */
export type MemberLifecycle = 'pending' | 'joining' | 'active' | 'leaving' | 'removed';

/** How a member process exited when it was not killed by the harness. */
export interface MemberExit {
  readonly atMs: number;
  readonly code: number | null;
  readonly signal: string | null;
  /** The lifecycle at the exit ('leaving'/'removed' with code 0 is a removed member stopping). */
  readonly lifecycle: MemberLifecycle;
}

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
  /** The peer URL the cluster knows this member by (its proxy). */
  readonly peerUrl: string;
  lifecycle: MemberLifecycle;
  /** The member id, once learnt (member list or member add). */
  id: bigint | undefined;
  /** For a member added at run time: the --initial-cluster it joins with (kept for restarts). */
  joinInitialCluster: string | undefined;
  /** Exits the harness did not cause, in order (bounded by the restarts, which are bounded). */
  readonly exits: MemberExit[];
}

/** Upper bound of members (initial and added) in one cluster: addresses are 10.77.x.(10+i). */
export const MEMBERS_MAX = 200;

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
  /** Called when a member exits without being killed by us (a removed member stopping is expected, not reported). */
  readonly onUnexpectedExit: (member: string, code: number | null, signal: string | null) => void;
  /** The run's clock for exit records (ms); default Date.now. */
  readonly now?: () => number;
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

/** Subnets this process has used: never picked twice, whatever the kernel still holds of them. */
const subnetsPicked = new Set<number>();

/** What the machine already holds, as `ip` lists it: addresses, links, namespaces. */
export interface NetworkInUse {
  readonly addresses: string;
  readonly links: string;
  readonly namespaces: string;
}

/**
 * Chooses a /24 under 10.77 from `inUse` (pure): candidates start from `pid`; a subnet is skipped
 * when an address in it exists, when links or a namespace named for it remain (a deleted
 * namespace takes its veth pair with it only when the kernel's deferred cleanup runs, so a run
 * that starts right after another in the same process must look at the names too), or when this
 * process picked it before (`picked`, which the choice joins).
 */
export function chooseSubnet(pid: number, inUse: NetworkInUse, picked: Set<number>): number {
  for (let attempt = 0; attempt < 250; attempt++) {
    const candidate = 1 + ((pid + attempt * 7) % 250);
    if (picked.has(candidate) || inUse.addresses.includes(`10.77.${candidate}.`)) continue;
    if (new RegExp(`\\bkvf${candidate}[hpbm]`).test(inUse.links) || new RegExp(`\\bkvf${candidate}m`).test(inUse.namespaces)) continue;
    picked.add(candidate);
    return candidate;
  }
  throw new Error('no free 10.77.x.0/24 subnet');
}

/** Picks a /24 under 10.77 that no address, link or namespace here uses yet, nor this process before. */
function pickSubnet(): number {
  return chooseSubnet(process.pid, {
    addresses: execFileSync('ip', ['-4', '-o', 'addr', 'show'], { encoding: 'utf8' }),
    links: execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }),
    namespaces: execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }),
  }, subnetsPicked);
}

/** A cluster of real kvd processes with network and process faults. */
export class FaultCluster {
  readonly members: FaultMember[];
  readonly options: FaultClusterOptions;
  readonly #subnet: number | undefined;
  readonly #bridge: string | undefined;
  readonly #logs = new Map<string, WriteStream>();
  #destroyed = false;
  /** Namespaces created so far (also those of slots that never started), for the cleanup. */
  readonly #namespaces: string[] = [];
  #bridgeCreated = false;
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
    if (options.size < 1 || options.size > MEMBERS_MAX) throw new Error(`cluster size must be 1..${MEMBERS_MAX}`);
    mkdirSync(options.root, { recursive: true });
    const subnet = options.mode === 'netns' ? pickSubnet() : undefined;
    const cluster = new FaultCluster(options, [], subnet);
    try {
      if (subnet !== undefined) cluster.#createBridge(subnet);
      for (let i = 1; i <= options.size; i++) {
        const member = await cluster.#newMember(i);
        member.lifecycle = 'active';
        cluster.members.push(member);
      }
      // The initial cluster string depends on the proxy ports: build it now they are bound.
      cluster.#initialClusterResolved = cluster.members.map((m) => `${m.name}=${m.peerUrl}`).join(',');
      for (const member of cluster.members) cluster.startMember(member.name);
    } catch (error: unknown) {
      await cluster.destroy();
      throw error;
    }
    return cluster;
  }

  /** The host side of the peer proxies (the bridge address, or 127.0.0.1). */
  get #hostSide(): string {
    return this.#subnet === undefined ? '127.0.0.1' : `10.77.${this.#subnet}.1`;
  }

  /** A member slot with index `index`: namespace and address (netns) or ports, a listening proxy. */
  async #newMember(index: number): Promise<FaultMember> {
    const subnet = this.#subnet;
    const host = subnet === undefined ? '127.0.0.1' : `10.77.${subnet}.${10 + index}`;
    const clientPort = subnet === undefined ? await freePort() : 2379;
    const peerPort = subnet === undefined ? await freePort() : 2380;
    const nameOf = (address: string): string => {
      if (subnet === undefined) return 'any';
      const last = Number(address.replace(/^::ffff:/, '').split('.')[3]);
      return `m${last - 10}`;
    };
    const proxy = new PeerProxy({ target: { host, port: peerPort }, sourceName: nameOf, random: this.options.random });
    const namespace = subnet === undefined ? undefined : `kvf${subnet}m${index}`;
    try {
      if (subnet !== undefined) {
        this.#namespaces.push(namespace as string);
        this.#createNamespace(subnet, { namespace: namespace as string, index, host });
      }
      await proxy.listen(this.#hostSide);
    } catch (error: unknown) {
      await proxy.close().catch(() => undefined);
      throw error;
    }
    return {
      name: `m${index}`, index, host, clientPort, peerPort, proxy, namespace,
      dataDir: join(this.options.root, `m${index}`), logPath: join(this.options.root, `m${index}.log`),
      process: undefined, state: 'stopped', endpoint: `${host}:${clientPort}`,
      peerUrl: `http://${this.#hostSide}:${proxy.port}`, lifecycle: 'pending', id: undefined, joinInitialCluster: undefined, exits: [],
    };
  }

  /**
   * Prepares a slot for a member to be added at run time (the next index, like the initial
   * members: own namespace and address, or fresh loopback ports; a peer proxy; an empty data
   * dir). Its lifecycle is 'pending' until {@link FaultCluster.startJoining}; a slot whose add is
   * abandoned is marked 'removed' by the caller.
   */
  async prepareMember(): Promise<FaultMember> {
    if (this.#destroyed) throw new Error('the cluster is destroyed');
    const index = this.members.length + 1;
    if (index > MEMBERS_MAX) throw new Error(`no more than ${MEMBERS_MAX} members per run`);
    const member = await this.#newMember(index);
    this.members.push(member);
    return member;
  }

  /** Starts a prepared member that was added to the cluster, joining with `initialCluster`. */
  startJoining(name: string, initialCluster: string): void {
    const member = this.member(name);
    if (member.lifecycle !== 'pending') throw new Error(`${name} is ${member.lifecycle}, not pending`);
    member.joinInitialCluster = initialCluster;
    member.lifecycle = 'joining';
    this.startMember(name);
  }

  /** --initial-cluster, known once the proxies are bound. */
  #initialClusterResolved = '';

  #createBridge(subnet: number): void {
    const bridge = this.#bridge as string;
    this.#bridgeCreated = true;
    ip('link', 'add', bridge, 'type', 'bridge');
    ip('addr', 'add', `10.77.${subnet}.1/24`, 'dev', bridge);
    ip('link', 'set', bridge, 'up');
  }

  #createNamespace(subnet: number, member: { readonly namespace: string; readonly index: number; readonly host: string }): void {
    const { namespace } = member;
    const hostEnd = `kvf${subnet}h${member.index}`;
    const memberEnd = `kvf${subnet}p${member.index}`;
    ip('netns', 'add', namespace);
    ip('link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', memberEnd);
    ip('link', 'set', memberEnd, 'netns', namespace);
    ip('link', 'set', hostEnd, 'master', this.#bridge as string);
    ip('link', 'set', hostEnd, 'up');
    inNamespace(namespace, 'ip', 'link', 'set', 'lo', 'up');
    inNamespace(namespace, 'ip', 'addr', 'add', `${member.host}/24`, 'dev', memberEnd);
    inNamespace(namespace, 'ip', 'link', 'set', memberEnd, 'up');
  }

  /** Client endpoints of the active members (the voters the harness started), in member order. */
  get endpoints(): string[] { return this.activeMembers().map((m) => m.endpoint); }

  /** Members that are voters as far as the harness knows. */
  activeMembers(): FaultMember[] {
    return this.members.filter((m) => m.lifecycle === 'active');
  }

  /** Members faults may target and heals restart: 'joining' and 'active' ones. */
  faultTargets(): FaultMember[] {
    return this.members.filter((m) => m.lifecycle === 'joining' || m.lifecycle === 'active');
  }

  /** The network this cluster uses, for the report. */
  describeNetwork(): string {
    return this.#subnet === undefined
      ? 'loopback 127.0.0.1 (no namespaces): partitions cut only traffic into the isolated members, at the proxies'
      : `namespaces kvf${this.#subnet}m1..m${this.options.size} (members added later get the next index, namespace and address) on bridge ${this.#bridge} 10.77.${this.#subnet}.0/24, peer traffic through proxies on 10.77.${this.#subnet}.1, partitions by iptables DROP`;
  }

  member(name: string): FaultMember {
    const member = this.members.find((m) => m.name === name);
    if (member === undefined) throw new Error(`no member ${name}`);
    return member;
  }

  /**
   * Starts (or restarts) a member with the same command line: the initial members bootstrap a
   * new cluster, members added at run time join with their saved --initial-cluster. Refuses a
   * 'removed' or 'pending' member (a removed member is never started again).
   */
  startMember(name: string): void {
    const member = this.member(name);
    if (member.process !== undefined) throw new Error(`${name} is running`);
    if (member.lifecycle === 'removed' || member.lifecycle === 'pending') throw new Error(`${name} is ${member.lifecycle}: not starting it`);
    const child = this.#spawn(member);
    child.on('exit', (code, signal) => {
      if (member.process !== child) return;
      member.process = undefined;
      member.state = 'stopped';
      if (this.#destroyed) return;
      member.exits.push({ atMs: (this.options.now ?? Date.now)(), code, signal, lifecycle: member.lifecycle });
      // A member that was (being) removed stops by itself with code 0: expected.
      const retiring = member.lifecycle === 'leaving' || member.lifecycle === 'removed';
      if (!(retiring && code === 0)) this.options.onUnexpectedExit(name, code, signal);
    });
    member.process = child;
    member.state = 'running';
  }

  /**
   * Starts a removed member's process once more on its data dir, with its command line, to see
   * that kvd refuses (a removed member must not come back). Resolves with its exit, or 'running'
   * after `timeoutMs` (then it is killed). Its output goes to the member's log.
   */
  async probeRestart(name: string, options: { timeoutMs: number }): Promise<{ code: number | null; signal: string | null } | 'running'> {
    const member = this.member(name);
    if (member.lifecycle !== 'removed' || member.process !== undefined) throw new Error(`${name} is not a removed, stopped member`);
    this.#log(member).write(`\n=== chaos: probing that ${name} refuses to restart after its removal ===\n`);
    const child = this.#spawn(member);
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'running'>((resolve) => { timer = setTimeout(() => resolve('running'), options.timeoutMs); });
    const outcome = await Promise.race([exited, timedOut]);
    clearTimeout(timer);
    if (outcome === 'running') {
      child.kill('SIGKILL');
      await exited;
    }
    return outcome;
  }

  #log(member: FaultMember): WriteStream {
    let log = this.#logs.get(member.name);
    if (log === undefined) {
      log = createWriteStream(member.logPath, { flags: 'a' });
      this.#logs.set(member.name, log);
    }
    return log;
  }

  /** Spawns a member's kvd process (in its namespace) with its command line; output to its log. */
  #spawn(member: FaultMember): ChildProcess {
    const joining = member.joinInitialCluster;
    const args = [
      KVD_BIN,
      '--name', member.name,
      '--data-dir', member.dataDir,
      '--listen-client-urls', `http://${member.host}:${member.clientPort}`,
      '--advertise-client-urls', `http://${member.host}:${member.clientPort}`,
      '--listen-peer-urls', `http://${member.host}:${member.peerPort}`,
      '--initial-advertise-peer-urls', member.peerUrl,
      '--initial-cluster', joining ?? this.#initialClusterResolved,
      '--initial-cluster-token', 'kvd-fault',
      '--initial-cluster-state', joining === undefined ? 'new' : 'existing',
      '--heartbeat-interval', String(this.options.heartbeatMs),
      '--election-timeout', String(this.options.electionMs),
      '--snapshot-count', String(this.options.snapshotCount),
      '--log-level', 'info',
    ];
    const log = this.#log(member);
    const child = member.namespace === undefined
      ? spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('ip', ['netns', 'exec', member.namespace, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    return child;
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

  /** The leader as seen by the running active members if they agree, else undefined. */
  async leader(options: { timeoutMs: number }): Promise<string | undefined> {
    const running = this.activeMembers().filter((m) => m.state === 'running');
    const statuses = await Promise.all(running.map((m) => call<StatusResponse>(m.endpoint, 'Maintenance', 'Status', {}, { timeoutMs: options.timeoutMs }).catch(() => undefined)));
    const leaders = new Set(statuses.map((s) => s?.leader));
    if (leaders.size !== 1 || statuses[0] === undefined || statuses[0].leader === '0') return undefined;
    // Learn the ids of the processes on the way (the harness tracks which process is which member).
    statuses.forEach((s, i) => {
      if (s !== undefined && running[i].id === undefined) running[i].id = BigInt(s.header.member_id);
    });
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
    for (const namespace of this.#namespaces) {
      try {
        ip('netns', 'del', namespace);
      } catch (error: unknown) {
        void error; // already removed (the veth pair goes with the namespace)
      }
    }
    this.#namespaces.length = 0;
    if (!this.#bridgeCreated) return;
    this.#bridgeCreated = false;
    try {
      ip('link', 'del', this.#bridge as string);
    } catch (error: unknown) {
      void error; // already removed
    }
  }
}
