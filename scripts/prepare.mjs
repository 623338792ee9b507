#!/usr/bin/env node
// npm's `prepare` hook: builds dist/ after `npm ci` / `npm install`. Under `npm ci --dry-run` npm
// installs nothing but still runs this hook (with npm_config_dry_run=true); there is no compiler
// to run then, so the build is skipped instead of failing the dry run.
import { spawnSync } from 'node:child_process';

if (process.env.npm_config_dry_run === 'true') {
  console.log('prepare: dry run, build skipped');
  process.exit(0);
}
const build = spawnSync('npm', ['run', 'build'], { stdio: 'inherit' });
process.exit(build.status ?? 1);
