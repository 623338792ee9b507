#!/usr/bin/env node
/**
 * kvctl: the command-line client of kvd, with etcdctl 3.4's verbs, flags and output formats
 * (`put`, `get`, `del`, `txn`, `compaction`, `watch`, `lease …`,
 * `member list|add|remove|update|promote`, `endpoint health|status|hashkv`, `alarm list|disarm`,
 * `defrag`, `lock`, `elect`, `snapshot save|status|restore`; `-w simple|json|table`), plus
 * `member replace` (resumable), `backup --to DIR` (incremental) and `snapshot restore DIR
 * --to-revision R` (point in time). It works against kvd and etcd
 * alike. Commands live in cli/kvctl/; this file only wires them.
 */
import { Command, CommanderError } from 'commander';
import { addCommands } from './kvctl/commands.js';

/** Rewrites commander's error lines into etcdctl's wording. */
function etcdctlError(text: string): string {
  return text
    .replace(/^error: unknown option '([^']+)'.*$/m, 'Error: unknown flag: $1')
    .replace(/^error: unknown command '([^']+)'.*$/m, `Error: unknown command "$1" for "kvctl"\nRun 'kvctl --help' for usage.`)
    .replace(/^error: /, 'Error: ');
}

/** Builds the kvctl program (exported for tests). */
export function buildProgram(): Command {
  const program = new Command('kvctl');
  program
    .description('A simple command line client for kvd (etcdctl-compatible)')
    .option('--endpoints <endpoints>', 'gRPC endpoints', '127.0.0.1:2379')
    .option('--dial-timeout <duration>', 'dial timeout for client connections', '2s')
    .option('--command-timeout <duration>', 'timeout for short running command (excluding dial timeout)', '5s')
    .option('-w, --write-out <format>', 'set the output format (json, simple, table)', 'simple')
    .option('--hex', 'print byte strings as hex encoded strings')
    .option('--user <user>', 'username[:password] for authentication (prompt if password is not supplied)')
    .option('--password <password>', 'password for authentication (if this option is used, --user option shouldn\'t include password)')
    .option('--cacert <file>', 'verify certificates of TLS-enabled secure servers using this CA bundle')
    .option('--cert <file>', 'identify secure client using this TLS certificate file')
    .option('--key <file>', 'identify secure client using this TLS key file')
    .option('--insecure-skip-tls-verify', 'skip server certificate verification')
    .option('--insecure-transport [bool]', 'disable transport security for client connections (etcdctl compatibility; kvctl uses TLS for https:// endpoints or when TLS flags are given)')
    .configureOutput({ outputError: (text, write) => write(etcdctlError(text)) })
    .exitOverride();
  addCommands(program);
  for (const command of program.commands) {
    command.exitOverride();
    command.configureOutput({ outputError: (text, write) => write(etcdctlError(text)) });
    for (const sub of command.commands) {
      sub.exitOverride();
      sub.configureOutput({ outputError: (text, write) => write(etcdctlError(text)) });
    }
  }
  return program;
}

async function main(): Promise<void> {
  try {
    await buildProgram().parseAsync(process.argv);
  } catch (error: unknown) {
    if (error instanceof CommanderError) {
      // etcdctl exits 1 on flag and command errors (cobra).
      process.exitCode = error.exitCode === 0 ? 0 : 1;
      return;
    }
    throw error;
  }
}

await main();
