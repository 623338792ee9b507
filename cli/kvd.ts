#!/usr/bin/env node
/**
 * `kvd`, the server. Takes etcd's flag names and defaults, the same settings from a config file
 * (--config-file, YAML with the flag names as keys, as etcd's) or from KVD_* environment
 * variables (KVD_DATA_DIR for --data-dir, ...). Flags win over the environment; a config file
 * excludes both, as in etcd. etcd keys of a config file that kvd does not support yet, and
 * unknown KVD_* variables, are named in a warning on stderr and ignored, as etcd does with
 * unknown ETCD_* variables. This file only parses, validates and calls the server.
 */
import { Command, Option } from 'commander';
import { BOOLEAN_SETTINGS, SETTINGS, buildConfig, camel, envName, readConfigFile } from '../src/server/flags.js';
import { runServer } from '../src/server/run.js';
import { errorMessage } from '../src/util/errors.js';

/** One warning line on stderr, before the server's own (JSON, stdout) log starts. */
function warn(message: string): void {
  process.stderr.write(`kvd: warning: ${message}\n`);
}

function main(argv: string[]): void {
  const program = new Command('kvd')
    .description('kvd: a Raft-replicated key-value store speaking the etcd v3 API')
    .version('0.1.0')
    .allowExcessArguments(false)
    .option('--config-file <path>', 'Path to the server configuration file in etcd\'s format (YAML with flag names as keys; etcd keys kvd lacks are ignored with a warning). Other flags and KVD_* variables are then not allowed.');
  for (const [flag, fallback, description] of SETTINGS) {
    // etcd's switches may be given alone (`--auto-tls`) or with a value (`--auto-tls=false`).
    const value = BOOLEAN_SETTINGS.has(flag) ? '[value]' : '<value>';
    program.addOption(new Option(`--${flag} ${value}`, `${description} (default: ${fallback || '""'}; env ${envName(flag)})`));
  }
  program.parse(argv);
  const raw = program.opts<Record<string, string | boolean | undefined>>();
  const options: Record<string, string | undefined> = {};
  for (const [key, value] of Object.entries(raw)) options[key] = value === undefined ? undefined : String(value);

  const values = new Map<string, string>();
  const fromFlags = SETTINGS.filter(([flag]) => options[camel(flag)] !== undefined);
  const fromEnv = SETTINGS.filter(([flag]) => process.env[envName(flag)] !== undefined);
  if (options.configFile !== undefined) {
    if (fromFlags.length > 0) throw new Error(`--config-file excludes other flags (got ${fromFlags.map(([f]) => `--${f}`).join(', ')})`);
    if (fromEnv.length > 0) throw new Error(`--config-file excludes KVD_* variables (got ${fromEnv.map(([f]) => envName(f)).join(', ')})`);
    const file = readConfigFile(options.configFile);
    for (const warning of file.warnings) warn(warning);
    for (const [key, value] of file.values) values.set(key, value);
  } else {
    for (const [flag] of fromEnv) values.set(flag, process.env[envName(flag)] as string);
    for (const [flag] of fromFlags) values.set(flag, options[camel(flag)] as string);
  }
  // As etcd with unknown ETCD_* variables: name the stray variable and go on (a typo must not
  // keep a member down). KVD_TEST_* and KVD_BENCH_* belong to the test and bench tools.
  for (const key of Object.keys(process.env).sort()) {
    if (key.startsWith('KVD_') && !SETTINGS.some(([flag]) => envName(flag) === key) && !key.startsWith('KVD_TEST_') && !key.startsWith('KVD_BENCH_')) {
      warn(`unrecognized environment variable ${key}; ignored`);
    }
  }
  const config = buildConfig(values);
  runServer(config).catch((error: unknown) => {
    process.stderr.write(`kvd: ${errorMessage(error)}\n`);
    process.exit(1);
  });
}

try {
  main(process.argv);
} catch (error: unknown) {
  process.stderr.write(`kvd: ${errorMessage(error)}\n`);
  process.exit(2);
}
