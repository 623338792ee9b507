/**
 * Run-length budgets of the simulator: the CLI explores longer fault phases than the node:test
 * file, which must stay fast on a busy machine.
 */
import type { BudgetOptions } from './params.js';

/** Budget for `run.js` (npm run sim). */
export const CLI_BUDGET: BudgetOptions = { chaosTicks: [150, 400] };
/** Budget for simulation.test.ts. */
export const TEST_BUDGET: BudgetOptions = { chaosTicks: [80, 200] };
