/**
 * Run-length budgets of the simulator. The CLI and the node:test file use the same budget so a
 * seed printed by either replays identically with `run.js --seeds 1 --from SEED`.
 */
import type { BudgetOptions } from './params.js';

/** Budget for `run.js` (npm run sim): fault phase length drawn per seed from this range, in ticks. */
export const CLI_BUDGET: BudgetOptions = { chaosTicks: [200, 600] };
/** Budget for simulation.test.ts. */
export const TEST_BUDGET: BudgetOptions = CLI_BUDGET;
