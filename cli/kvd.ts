#!/usr/bin/env node
/**
 * `kvd`, the server. Takes etcd's flag names and defaults, the same settings from a config file
 * (--config-file, YAML with the flag names as keys, as etcd's) or from KVD_* environment
 * variables (KVD_DATA_DIR for --data-dir, ...). Flags win over the environment; a config file
 * excludes both, as in etcd. This file only parses, validates and calls the server.
 */
import { Command, Option } from 'commander';
import { SETTINGS, buildConfig, camel, envName, readConfigFile } from '../src/server/flags.js';
import { runServer } from '../src/server/run.js';
import { errorMessage } from '../src/util/errors.js';

function main(argv: string[]): void {
  const program = new Command('kvd')
    .description('kvd: a Raft-replicated key-value store speaking the etcd v3 API')
    .version('0.1.0')
    .allowExcessArguments(false)
    .option('--config-file <path>', 'Path to the server configuration file (YAML with flag names as keys). Other flags and KVD_* variables are then not allowed.');
  for (const [flag, fallback, description] of SETTINGS) {
    program.addOption(new Option(`--${flag} <value>`, `${description} (default: ${fallback || '""'}; env ${envName(flag)})`));
  }
  program.parse(argv);
  const options = program.opts<Record<string, string | undefined>>();

  const values = new Map<string, string>();
  const fromFlags = SETTINGS.filter(([flag]) => options[camel(flag)] !== undefined);
  const fromEnv = SETTINGS.filter(([flag]) => process.env[envName(flag)] !== undefined);
  if (options.configFile !== undefined) {
    if (fromFlags.length > 0) throw new Error(`--config-file excludes other flags (got ${fromFlags.map(([f]) => `--${f}`).join(', ')})`);
    if (fromEnv.length > 0) throw new Error(`--config-file excludes KVD_* variables (got ${fromEnv.map(([f]) => envName(f)).join(', ')})`);
    for (const [key, value] of readConfigFile(options.configFile)) values.set(key, value);
  } else {
    for (const [flag] of fromEnv) values.set(flag, process.env[envName(flag)] as string);
    for (const [flag] of fromFlags) values.set(flag, options[camel(flag)] as string);
  }
  for (const key of Object.keys(process.env)) {
    if (key.startsWith('KVD_') && !SETTINGS.some(([flag]) => envName(flag) === key) && !key.startsWith('KVD_TEST_') && !key.startsWith('KVD_BENCH_')) {
      throw new Error(`unknown environment variable ${key}`);
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
