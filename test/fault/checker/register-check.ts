/**
 * The register history's linearizability check, run in a worker thread. The chaos harness runs
 * the peer proxies and the clients in its own event loop; a check of tens of thousands of
 * operations takes seconds, and run inline it stopped the proxies meanwhile: the leader lost its
 * quorum and the lease checker saw leases outlive a leader that could not commit their revoke
 * (seed 8484 with front-ends, 2026-12-07). Off the main thread the cluster keeps its network.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { checkLinearizable, pruneRegisterHistory, registerModel, type CheckResult } from './linearizability.js';
import type { RegisterOp } from '../workloads.js';

/** What the worker answers. */
export interface RegisterCheck {
  /** Operations left after pruning. */
  readonly pruned: number;
  readonly result: CheckResult;
}

interface Job {
  readonly kind: 'register-check';
  readonly history: readonly RegisterOp[];
  readonly maxStepsPerKey: number;
}

function run(job: Job): RegisterCheck {
  const pruned = pruneRegisterHistory(job.history);
  return { pruned: pruned.length, result: checkLinearizable(registerModel, pruned, { maxStepsPerKey: job.maxStepsPerKey }) };
}

if (!isMainThread && (workerData as Partial<Job> | undefined)?.kind === 'register-check') {
  parentPort?.postMessage(run(workerData as Job));
}

/** Prunes and checks `history` in a worker thread. */
export function checkRegistersOffThread(history: readonly RegisterOp[], options: { maxStepsPerKey: number }): Promise<RegisterCheck> {
  const job: Job = { kind: 'register-check', history, maxStepsPerKey: options.maxStepsPerKey };
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: job });
    let answered = false;
    worker.once('message', (answer: RegisterCheck) => {
      answered = true;
      resolve(answer);
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (!answered) reject(new Error(`the register check's worker exited with code ${code} before answering`));
    });
  });
}
