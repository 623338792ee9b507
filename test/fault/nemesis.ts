/**
 * The fault schedule: generated up front from the seed (so it is printed before the run and a
 * seed names its schedule), then applied to a {@link FaultCluster}. Targets that depend on the
 * cluster's state at the time (the leader) are resolved when the fault starts and logged.
 * Faults never overlap: each is healed (network healed, paused members resumed, killed members
 * restarted) before the next quiet period. With the membership nemesis running beside it, the
 * targets are the members that are 'joining' or 'active' when the fault starts, and a heal
 * restarts only those (never a member that was removed, or whose removal is in flight).
 */
import type { FaultCluster } from './cluster.js';
import type { LinkFault } from './proxy.js';

/** Fault families selectable with --faults. */
export const FAULT_KINDS = ['partition', 'kill', 'pause', 'netem'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** One planned fault. */
export type PlannedFault =
  | { readonly kind: 'partition'; readonly shape: 'isolate-leader' | 'minority-majority' | 'bridge' | 'ring'; readonly atMs: number; readonly durationMs: number }
  | { readonly kind: 'kill'; readonly target: 'leader' | 'random' | 'two' | 'all'; readonly atMs: number; readonly durationMs: number }
  | { readonly kind: 'pause'; readonly target: 'leader' | 'random'; readonly atMs: number; readonly durationMs: number }
  | { readonly kind: 'netem'; readonly scope: 'all' | 'one-member'; readonly fault: LinkFault; readonly atMs: number; readonly durationMs: number };

/** A fault as it happened (for the report and the lease checker). */
export interface AppliedFault {
  readonly description: string;
  readonly startMs: number;
  endMs: number;
}

/** A seeded generator (mulberry32); returns floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Quiet periods and fault lengths (ms). */
const QUIET_MS: readonly [number, number] = [2_000, 5_000];
const FAULT_MS: readonly [number, number] = [3_000, 10_000];
/** Upper bound of faults per schedule (the loop's bound). */
const FAULTS_MAX = 10_000;

/** Plans faults of the enabled kinds over `durationMs`, starting after `warmupMs`. */
export function planFaults(options: { random: () => number; kinds: readonly FaultKind[]; durationMs: number; members: number }): PlannedFault[] {
  const { random, kinds } = options;
  const between = (range: readonly [number, number]): number => Math.round(range[0] + random() * (range[1] - range[0]));
  const plan: PlannedFault[] = [];
  let at = between(QUIET_MS);
  for (let i = 0; i < FAULTS_MAX && kinds.length > 0; i++) {
    const durationMs = between(FAULT_MS);
    if (at + durationMs > options.durationMs) break;
    const kind = kinds[Math.floor(random() * kinds.length)];
    switch (kind) {
      case 'partition': {
        const shapes = options.members >= 5 ? (['isolate-leader', 'minority-majority', 'bridge', 'ring'] as const) : (['isolate-leader', 'minority-majority', 'bridge'] as const);
        plan.push({ kind, shape: shapes[Math.floor(random() * shapes.length)], atMs: at, durationMs });
        break;
      }
      case 'kill': {
        const dice = random();
        plan.push({ kind, target: dice < 0.4 ? 'leader' : dice < 0.8 ? 'random' : dice < 0.93 ? 'two' : 'all', atMs: at, durationMs });
        break;
      }
      case 'pause': {
        // A third of the pauses are shorter than an election timeout or about one: the member
        // resumes believing nothing happened (a leader with expired leases, stale reads).
        const short = random() < 0.33;
        plan.push({ kind, target: random() < 0.5 ? 'leader' : 'random', atMs: at, durationMs: short ? Math.round(300 + random() * 1500) : durationMs });
        break;
      }
      case 'netem': {
        const fault: LinkFault = { delayMs: Math.round(10 + random() * 150), jitterMs: Math.round(random() * 100), lossRate: Math.round(random() * 20) / 100, resetRate: random() < 0.3 ? 0.002 : 0 };
        plan.push({ kind, scope: random() < 0.5 ? 'all' : 'one-member', fault, atMs: at, durationMs });
        break;
      }
    }
    at += plan[plan.length - 1].durationMs + between(QUIET_MS);
  }
  return plan;
}

/** A one-line description of a planned fault. */
export function describePlanned(fault: PlannedFault): string {
  const when = `t=${(fault.atMs / 1000).toFixed(1)}s for ${(fault.durationMs / 1000).toFixed(1)}s`;
  switch (fault.kind) {
    case 'partition': return `${when}: partition ${fault.shape}`;
    case 'kill': return `${when}: kill -9 ${fault.target}, then restart`;
    case 'pause': return `${when}: SIGSTOP ${fault.target}, then SIGCONT`;
    case 'netem': return `${when}: peer links (${fault.scope}) delay ${fault.fault.delayMs}±${fault.fault.jitterMs} ms, loss ${(fault.fault.lossRate * 100).toFixed(0)}%, reset ${(fault.fault.resetRate * 100).toFixed(1)}%`;
  }
}

function shuffle<T>(random: () => number, items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/**
 * Heals the network, resumes every paused process (a removed one too, so that it can stop) and
 * restarts the stopped 'joining' and 'active' members.
 */
export function healCluster(cluster: FaultCluster): void {
  cluster.healNetwork();
  for (const member of cluster.members) {
    if (member.state === 'paused') cluster.resume(member.name);
    if (member.state === 'stopped' && (member.lifecycle === 'joining' || member.lifecycle === 'active')) cluster.startMember(member.name);
  }
}

/** Applies a fault; returns its description (with resolved targets) and the function that heals it. */
export async function applyFault(cluster: FaultCluster, fault: PlannedFault, random: () => number): Promise<{ description: string; heal: () => Promise<void> }> {
  const names = cluster.faultTargets().map((m) => m.name);
  const leader = (await cluster.leader({ timeoutMs: 500 })) ?? names[Math.floor(random() * names.length)];
  const healAll = async (): Promise<void> => healCluster(cluster);
  switch (fault.kind) {
    case 'partition': {
      const shuffled = shuffle(random, names);
      let description: string;
      switch (fault.shape) {
        case 'isolate-leader': {
          const rest = names.filter((n) => n !== leader);
          cluster.partition([[leader], rest]);
          description = `partition: leader ${leader} | ${rest.join(',')}`;
          break;
        }
        case 'minority-majority': {
          const minority = shuffled.slice(0, Math.floor((names.length - 1) / 2));
          const majority = shuffled.slice(minority.length);
          cluster.partition([minority, majority]);
          description = `partition: ${minority.join(',')} | ${majority.join(',')}`;
          break;
        }
        case 'bridge': {
          // Two halves that both still reach one bridge member.
          const bridge = shuffled[0];
          const half = Math.floor((names.length - 1) / 2);
          const left = shuffled.slice(1, 1 + half);
          const right = shuffled.slice(1 + half);
          const cut: Array<[string, string]> = [];
          for (const a of left) for (const b of right) cut.push([a, b]);
          cluster.cutLinks(cut);
          description = `partition: bridge ${bridge} between ${left.join(',')} and ${right.join(',')}`;
          break;
        }
        case 'ring': {
          // Each member reaches only its two ring neighbours.
          const cut: Array<[string, string]> = [];
          for (let i = 0; i < shuffled.length; i++) {
            for (let j = i + 1; j < shuffled.length; j++) {
              const distance = Math.min(j - i, shuffled.length - (j - i));
              if (distance > 1) cut.push([shuffled[i], shuffled[j]]);
            }
          }
          cluster.cutLinks(cut);
          description = `partition: ring ${shuffled.join('-')}-${shuffled[0]}`;
          break;
        }
      }
      return { description, heal: healAll };
    }
    case 'kill': {
      const victims = fault.target === 'leader' ? [leader] : fault.target === 'random' ? [names[Math.floor(random() * names.length)]] : fault.target === 'two' ? shuffle(random, names).slice(0, 2) : names;
      for (const victim of victims) await cluster.kill(victim);
      return { description: `kill -9 ${victims.join(',')}${fault.target === 'leader' ? ' (leader)' : ''}`, heal: healAll };
    }
    case 'pause': {
      const victim = fault.target === 'leader' ? leader : names[Math.floor(random() * names.length)];
      cluster.pause(victim);
      return { description: `SIGSTOP ${victim}${fault.target === 'leader' ? ' (leader)' : ''}`, heal: healAll };
    }
    case 'netem': {
      const pairs: Array<[string, string]> = [];
      const center = names[Math.floor(random() * names.length)];
      for (let i = 0; i < names.length; i++) {
        for (let j = i + 1; j < names.length; j++) {
          if (fault.scope === 'all' || names[i] === center || names[j] === center) pairs.push([names[i], names[j]]);
        }
      }
      for (const [a, b] of pairs) cluster.setLinkFault(a, b, fault.fault);
      return { description: `netem on ${fault.scope === 'all' ? 'all links' : `links of ${center}`}: ${describePlanned(fault).split(': ')[1]}`, heal: healAll };
    }
  }
}
