/**
 * CLI for the cluster simulator: `node dist/test/sim/run.js --seeds N --from S [--verbose]
 * [--stop-on-failure] [--chaos-ticks LO,HI]` runs seeds S..S+N-1, prints each failing seed with its parameters, the
 * failure and the last events, and ends with exactly `N passed, M failed` (exit 1 if any failed).
 * With one seed (or --verbose) it prints the seed's parameters first; --verbose also streams
 * every event. A failing seed replays exactly with `--seeds 1 --from <seed>`. The stats of every seed, summed,
 * go to stderr with the timing line.
 */
import { describeParams, deriveParams } from './params.js';
import { runSimulation } from './simulator.js';
import { CLI_BUDGET } from './budgets.js';

interface CliOptions {
  seeds: number;
  from: number;
  verbose: 'on' | 'off';
  /** 'stop': stop at the first failing seed (mutation testing: how many seeds until caught). */
  onFailure: 'continue' | 'stop';
  chaosTicks: readonly [number, number];
}

function parseArgs(argv: readonly string[]): CliOptions {
  const options: CliOptions = { seeds: 100, from: 1, verbose: 'off', onFailure: 'continue', chaosTicks: CLI_BUDGET.chaosTicks };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = (): string => {
      const next = argv[++i];
      if (next === undefined) throw new Error(`${arg} needs a value`);
      return next;
    };
    if (arg === '--seeds') options.seeds = parseCount(value(), arg);
    else if (arg === '--from') options.from = parseCount(value(), arg);
    else if (arg === '--verbose') options.verbose = 'on';
    else if (arg === '--stop-on-failure') options.onFailure = 'stop';
    else if (arg === '--chaos-ticks') {
      const [lo, hi] = value().split(',').map((x) => parseCount(x, arg));
      options.chaosTicks = [lo, hi ?? lo];
    } else throw new Error(`unknown argument ${arg} (usage: --seeds N --from S [--verbose] [--stop-on-failure] [--chaos-ticks LO,HI])`);
  }
  return options;
}

function parseCount(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${flag}: not a non-negative integer: ${text}`);
  return n;
}

function main(): number {
  const options = parseArgs(process.argv.slice(2));
  const budget = { chaosTicks: options.chaosTicks };
  const showParams = options.verbose === 'on' || options.seeds === 1;
  let passed = 0;
  let failed = 0;
  const totals: Record<string, number> = {};
  const started = performance.now();
  for (let seed = options.from; seed < options.from + options.seeds; seed++) {
    if (showParams) console.log(describeParams(deriveParams(seed, budget)));
    const verbose = options.verbose === 'on' ? (line: string) => console.log(line) : undefined;
    const result = runSimulation({ seed, budget, verbose });
    for (const [key, value] of Object.entries(result.stats)) totals[key] = (totals[key] ?? 0) + value;
    if (result.ok) {
      passed++;
      if (showParams) console.log(`seed ${seed} passed: ${JSON.stringify(result.stats)}`);
      continue;
    }
    failed++;
    console.log(`\nFAILED seed ${seed}: ${result.message}`);
    if (!showParams) console.log(describeParams(result.params));
    console.log(`stats: ${JSON.stringify(result.stats)}`);
    console.log(`last ${result.trace.length} events:`);
    for (const line of result.trace) console.log(`  ${line}`);
    console.log(`replay: node dist/test/sim/run.js --seeds 1 --from ${seed}${options.chaosTicks === CLI_BUDGET.chaosTicks ? '' : ` --chaos-ticks ${options.chaosTicks.join(',')}`}\n`);
    if (options.onFailure === 'stop') break;
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.error(`(${passed + failed} seeds from ${options.from} in ${seconds} s; stats summed: ${JSON.stringify(totals)})`);
  console.log(`${passed} passed, ${failed} failed`);
  return failed > 0 ? 1 : 0;
}

process.exitCode = main();
