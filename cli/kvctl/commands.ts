/**
 * kvctl's commands, with etcdctl 3.4's verbs, flags, argument checks and messages. Each action
 * parses and validates, calls the client, and prints through format.ts.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { Command, Option } from 'commander';
import { KvError, type Client, type RangeOptions, type SortOrder, type SortTarget, type StatusResult, type HashKvResult } from '../../src/client/index.js';
import { CliError, ExitCode, clientFor, err, interrupted, out, parseInt64, parseLeaseId, print, readStdin, settingsFrom, type GlobalFlags, type Settings } from './context.js';
import * as format from './format.js';
import { parseCompare, parseRequest, TxnParseError } from './txn.js';

type Action = (settings: Settings, client: Client, args: string[], flags: Record<string, unknown>) => Promise<void>;

/** Wraps an action: settings, client lifetime, etcdctl-style error reporting. */
function run(action: Action): (...parameters: unknown[]) => Promise<void> {
  return async (...parameters: unknown[]): Promise<void> => {
    const command = parameters[parameters.length - 1] as Command;
    const flags = command.opts() as Record<string, unknown>;
    const args = (command.args as string[]).slice();
    let client: Client | undefined;
    try {
      const settings = settingsFrom(command.optsWithGlobals() as unknown as GlobalFlags);
      client = clientFor(settings);
      await action(settings, client, args, flags);
    } catch (error: unknown) {
      await reportError(error);
    } finally {
      client?.close();
    }
  };
}

/** Prints `Error: <message>` and sets the exit code. */
export async function reportError(error: unknown): Promise<void> {
  if (error instanceof CliError) {
    await err(`Error: ${error.message}\n`);
    process.exitCode = error.exitCode;
    return;
  }
  if (error instanceof TxnParseError) {
    await err(`Error: ${error.message}\n`);
    process.exitCode = error.exitCode;
    return;
  }
  const message = error instanceof Error ? error.message : String(error);
  await err(`Error: ${message}\n`);
  process.exitCode = error instanceof KvError && error.grpcCode === -1 && /connect/.test(message) ? ExitCode.badConnection : ExitCode.error;
}

function bool(flags: Record<string, unknown>, name: string): boolean {
  return flags[name] === true;
}

function str(flags: Record<string, unknown>, name: string): string {
  const value = flags[name];
  return typeof value === 'string' ? value : '';
}

// ---------------------------------------------------------------------------------------------
// KV

const putAction: Action = async (settings, client, args, flags) => {
  const ignoreValue = bool(flags, 'ignoreValue');
  if (args.length === 0) throw new CliError('put command needs 1 argument and input from stdin or 2 arguments', ExitCode.badArgs);
  if (ignoreValue && args.length > 1) throw new CliError("put command needs only 1 argument when 'ignore-value' is set", ExitCode.badArgs);
  let value = args[1];
  if (value === undefined && !ignoreValue) {
    if (process.stdin.isTTY) throw new CliError('put command needs 1 argument and input from stdin or 2 arguments', ExitCode.badArgs);
    value = await readStdin();
  }
  if (args.length > 2) throw new CliError('put command needs 1 argument and input from stdin or 2 arguments', ExitCode.badArgs);
  const leaseText = str(flags, 'lease');
  const lease = leaseText === '' || leaseText === '0' ? 0n : parseLeaseId(leaseText);
  if (bool(flags, 'ignoreLease') && lease !== 0n) throw new CliError("put command needs only 1 argument when 'ignore-lease' is set", ExitCode.badArgs);
  const result = await client.put(args[0], value ?? '', { lease, prevKv: bool(flags, 'prevKv'), ignoreValue, ignoreLease: bool(flags, 'ignoreLease') });
  await print(format.formatPut(result, settings.format, { hex: settings.hex }), settings.format);
};

const SORT_TARGETS: Record<string, SortTarget> = { CREATE: 'create', KEY: 'key', MODIFY: 'mod', VALUE: 'value', VERSION: 'version' };

/** Builds range options from etcdctl's get flags. */
function getOptions(args: string[], flags: Record<string, unknown>): RangeOptions {
  const prefix = bool(flags, 'prefix');
  const fromKey = bool(flags, 'fromKey');
  if (prefix && fromKey) throw new CliError('`--prefix` and `--from-key` cannot be set at the same time, choose one', ExitCode.badArgs);
  if ((prefix || fromKey) && args.length > 1) throw new CliError('too many arguments, only accept one argument when `--prefix` or `--from-key` is set', ExitCode.badArgs);
  const consistency = str(flags, 'consistency');
  if (consistency !== 'l' && consistency !== 's') throw new CliError(`unknown consistency flag "${consistency}"`, ExitCode.badFeature);
  const orderText = str(flags, 'order').toUpperCase();
  let order: SortOrder = 'none';
  if (orderText === 'ASCEND') order = 'ascend';
  else if (orderText === 'DESCEND') order = 'descend';
  else if (orderText !== '') throw new CliError(`bad sort order ${str(flags, 'order')}`, ExitCode.badFeature);
  const targetText = str(flags, 'sortBy').toUpperCase();
  const target = targetText === '' ? 'key' : SORT_TARGETS[targetText];
  if (target === undefined) throw new CliError(`bad sort target ${str(flags, 'sortBy')}`, ExitCode.badFeature);
  // clientv3.WithSort: ascending by key is the server's default order, so it sends none.
  if (target === 'key' && order === 'ascend') order = 'none';
  return {
    rangeEnd: args[1],
    prefix,
    fromKey,
    revision: parseInt64(str(flags, 'rev') || '0', 'rev'),
    limit: Number(parseInt64(str(flags, 'limit') || '0', 'limit')),
    sort: { target, order },
    keysOnly: bool(flags, 'keysOnly'),
    countOnly: bool(flags, 'countOnly'),
    serializable: consistency === 's',
  };
}

const getAction: Action = async (settings, client, args, flags) => {
  if (args.length === 0 || args.length > 2) throw new CliError('get command needs one argument as key and an optional argument as range_end', ExitCode.badArgs);
  const options = getOptions(args, flags);
  const result = await client.range(args[0], options);
  await print(format.formatGet(result, settings.format, { hex: settings.hex, valueOnly: bool(flags, 'printValueOnly') }), settings.format);
};

const delAction: Action = async (settings, client, args, flags) => {
  if (args.length === 0 || args.length > 2) throw new CliError('del command needs one argument as key and an optional argument as range_end', ExitCode.badArgs);
  const prefix = bool(flags, 'prefix');
  const fromKey = bool(flags, 'fromKey');
  if (prefix && fromKey) throw new CliError('`--prefix` and `--from-key` cannot be set at the same time, choose one', ExitCode.badArgs);
  if ((prefix || fromKey) && args.length > 1) throw new CliError('too many arguments, only accept one argument when `--prefix` or `--from-key` is set', ExitCode.badArgs);
  const result = await client.delete(args[0], { rangeEnd: args[1], prefix, fromKey, prevKv: bool(flags, 'prevKv') });
  await print(format.formatDelete(result, settings.format, { hex: settings.hex }), settings.format);
};

/** Reads lines from stdin one at a time (EOF → undefined). */
function lineReader(): { next(): Promise<string | undefined>; close(): void } {
  const lines = createInterface({ input: process.stdin, terminal: false });
  const buffered: string[] = [];
  const waiters: Array<(line: string | undefined) => void> = [];
  let ended = false;
  lines.on('line', (line) => {
    const waiter = waiters.shift();
    if (waiter !== undefined) waiter(line);
    else buffered.push(line);
  });
  lines.on('close', () => {
    ended = true;
    for (const waiter of waiters.splice(0)) waiter(undefined);
  });
  return {
    next(): Promise<string | undefined> {
      const line = buffered.shift();
      if (line !== undefined) return Promise.resolve(line);
      if (ended) return Promise.resolve(undefined);
      return new Promise((resolve) => waiters.push(resolve));
    },
    close(): void {
      lines.close();
    },
  };
}

const txnAction: Action = async (settings, client, _args, flags) => {
  const interactive = bool(flags, 'interactive');
  const reader = lineReader();
  try {
    const section = async <T>(prompt: string, parse: (line: string) => T): Promise<T[]> => {
      if (interactive) await out(`${prompt}\n`);
      const items: T[] = [];
      for (;;) {
        const line = await reader.next();
        if (line === undefined) throw new CliError('EOF', ExitCode.invalidInput);
        if (line.trim() === '') return items;
        items.push(parse(line));
      }
    };
    const compares = await section('compares:', parseCompare);
    const success = await section('success requests (get, put, del):', parseRequest);
    const failure = await section('failure requests (get, put, del):', parseRequest);
    const result = await client.txn().if(...compares).then(...success).else(...failure).commit();
    await print(format.formatTxn(result, settings.format, { hex: settings.hex }), settings.format);
  } finally {
    reader.close();
  }
};

const compactionAction: Action = async (_settings, client, args, flags) => {
  if (args.length !== 1) throw new CliError('compaction command needs 1 argument', ExitCode.badArgs);
  const revision = parseInt64(args[0], 'revision');
  await client.compact(revision, { physical: bool(flags, 'physical') });
  await out(format.formatCompaction(revision));
};

// ---------------------------------------------------------------------------------------------
// Watch

async function watchOnce(settings: Settings, client: Client, args: string[], flags: Record<string, unknown>, signal: AbortSignal): Promise<void> {
  const prefix = bool(flags, 'prefix');
  if (args.length === 0) throw new CliError('bad number of arguments', ExitCode.badArgs);
  if (prefix && args.length > 1) throw new CliError('`range_end` and `--prefix` are mutually exclusive', ExitCode.badArgs);
  const rev = parseInt64(str(flags, 'rev') || '0', 'rev');
  const watcher = client.watch(args[0], { rangeEnd: args[1], prefix, prevKv: bool(flags, 'prevKv'), startRevision: rev, signal });
  try {
    for await (const batch of watcher.batches()) {
      if (batch.events.length === 0) continue;
      await print(format.formatWatch(batch, settings.format, { hex: settings.hex }), settings.format);
    }
  } catch (error: unknown) {
    if (signal.aborted) return;
    if (error instanceof KvError && error.code === 'compacted') {
      await err(`watch was canceled (${error.message})\n`);
      throw new CliError('watch is canceled by the server', ExitCode.interrupted);
    }
    throw error;
  }
}

const watchAction: Action = async (settings, client, args, flags) => {
  const controller = new AbortController();
  void interrupted().then(() => controller.abort());
  if (bool(flags, 'interactive')) {
    if (args.length > 0) throw new CliError('too many arguments', ExitCode.badArgs);
    const reader = lineReader();
    const running: Array<Promise<void>> = [];
    for (;;) {
      if (controller.signal.aborted) return;
      const line = await reader.next();
      // etcdctl ends interactive watching at the end of its input, with this error.
      if (line === undefined) throw new CliError('Error reading watch request line: EOF', ExitCode.invalidInput);
      const words = line.trim().split(/\s+/);
      if (words[0] !== 'watch') {
        await err(`Invalid command ${line} (only support watch)\n`);
        continue;
      }
      const command = new Command('watch').exitOverride().option('--prefix').option('--prev-kv').option('--rev <rev>', '', '0').allowExcessArguments(true);
      command.parse(words.slice(1), { from: 'user' });
      running.push(watchOnce(settings, client, command.args, command.opts(), controller.signal));
    }
  }
  await watchOnce(settings, client, args, flags, controller.signal);
};

// ---------------------------------------------------------------------------------------------
// Lease

const leaseGrantAction: Action = async (settings, client, args) => {
  if (args.length !== 1) throw new CliError('lease grant command needs TTL argument', ExitCode.badArgs);
  const ttl = Number(parseInt64(args[0], 'ttl'));
  let result;
  try {
    result = await client.leases.grant(ttl);
  } catch (error: unknown) {
    throw new CliError(`failed to grant lease (${error instanceof Error ? error.message : String(error)})`);
  }
  await print(format.formatLeaseGrant(result, settings.format), settings.format);
};

const leaseRevokeAction: Action = async (settings, client, args) => {
  if (args.length !== 1) throw new CliError('lease revoke command needs 1 argument', ExitCode.badArgs);
  const id = parseLeaseId(args[0], 'lease-arg');
  let result;
  try {
    result = await client.leases.revoke(id);
  } catch (error: unknown) {
    throw new CliError(`failed to revoke lease (${error instanceof Error ? error.message : String(error)})`);
  }
  await print(format.formatLeaseRevoke(id, result, settings.format), settings.format);
};

const leaseTimeToLiveAction: Action = async (settings, client, args, flags) => {
  if (args.length !== 1) throw new CliError('lease timetolive command needs lease ID as argument', ExitCode.badArgs);
  const id = parseLeaseId(args[0], 'lease-arg');
  const result = await client.leases.timeToLive(id, { keys: bool(flags, 'keys') });
  await print(format.formatLeaseTimeToLive(result, settings.format, { keys: bool(flags, 'keys') }), settings.format);
};

const leaseListAction: Action = async (settings, client) => {
  const result = await client.leases.list();
  await print(format.formatLeaseList(result, settings.format), settings.format);
};

const leaseKeepAliveAction: Action = async (settings, client, args, flags) => {
  if (args.length !== 1) throw new CliError('lease keep-alive command needs lease ID as argument', ExitCode.badArgs);
  const id = parseLeaseId(args[0], 'lease-arg');
  if (bool(flags, 'once')) {
    let result;
    try {
      result = await client.leases.keepAliveOnce(id);
    } catch (error: unknown) {
      throw new CliError(`failed to keep-alive lease (${error instanceof Error ? error.message : String(error)})`);
    }
    await print(format.formatLeaseKeepAlive(result, settings.format), settings.format);
    return;
  }
  let stop = false;
  void interrupted().then(() => {
    stop = true;
  });
  while (!stop) {
    let result;
    try {
      result = await client.leases.keepAliveOnce(id);
    } catch (error: unknown) {
      void error; // etcdctl reports an expired lease this way and stops.
      await out(`lease ${format.leaseHex(id)} expired or revoked.\n`);
      return;
    }
    await print(format.formatLeaseKeepAlive(result, settings.format), settings.format);
    const waitMs = Math.max(500, (result.ttl * 1000) / 3);
    const until = Date.now() + waitMs;
    while (!stop && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, Math.min(100, until - Date.now())));
  }
};

// ---------------------------------------------------------------------------------------------
// Cluster and endpoints

const memberListAction: Action = async (settings, client) => {
  const result = await client.cluster.memberList();
  await out(format.formatMemberList(result, settings.format));
};

async function endpointsFor(settings: Settings, client: Client, flags: Record<string, unknown>): Promise<string[]> {
  if (!bool(flags, 'cluster')) return settings.endpoints;
  const members = await client.cluster.memberList();
  return members.members.flatMap((member) => [...member.clientUrls]);
}

const endpointHealthAction: Action = async (settings, client, _args, flags) => {
  const endpoints = await endpointsFor(settings, client, flags);
  const results = await Promise.all(endpoints.map((endpoint) => client.cluster.health(endpoint, { timeoutMs: settings.commandTimeoutMs })));
  const printed = format.formatHealth(results, settings.format);
  await out(printed.stdout);
  await err(printed.stderr);
  if (results.some((result) => !result.health)) throw new CliError('unhealthy cluster');
};

const endpointStatusAction: Action = async (settings, client, _args, flags) => {
  const endpoints = await endpointsFor(settings, client, flags);
  const statuses: Array<{ endpoint: string; status: StatusResult }> = [];
  for (const endpoint of endpoints) {
    try {
      statuses.push({ endpoint, status: await client.cluster.status(endpoint) });
    } catch (error: unknown) {
      await err(`Failed to get the status of endpoint ${endpoint} (${error instanceof Error ? error.message : String(error)})\n`);
    }
  }
  await out(format.formatEndpointStatus(statuses, settings.format));
  if (statuses.length !== endpoints.length) process.exitCode = ExitCode.error;
};

const endpointHashKvAction: Action = async (settings, client, _args, flags) => {
  const endpoints = await endpointsFor(settings, client, flags);
  const revision = parseInt64(str(flags, 'rev') || '0', 'rev');
  const hashes: Array<{ endpoint: string; hash: HashKvResult }> = [];
  for (const endpoint of endpoints) {
    try {
      hashes.push({ endpoint, hash: await client.cluster.hashKv(endpoint, revision) });
    } catch (error: unknown) {
      await err(`Failed to get the hash of endpoint ${endpoint} (${error instanceof Error ? error.message : String(error)})\n`);
    }
  }
  await out(format.formatHashKv(hashes, settings.format));
  if (hashes.length !== endpoints.length) process.exitCode = ExitCode.error;
};

// ---------------------------------------------------------------------------------------------
// Lock and election

const lockAction: Action = async (settings, client, args, flags) => {
  if (args.length === 0) throw new CliError('lock takes a lock name argument and an optional command to execute.', ExitCode.badArgs);
  const ttl = Number(parseInt64(str(flags, 'ttl') || '10', 'ttl'));
  const session = await client.session({ ttl });
  const mutex = client.lock(args[0], { session });
  const controller = new AbortController();
  const stop = interrupted();
  void stop.then(() => controller.abort());
  try {
    await mutex.lock({ signal: controller.signal });
  } catch (error: unknown) {
    await session.close();
    if (controller.signal.aborted) return;
    throw error;
  }
  const command = args.slice(1);
  if (command.length > 0) {
    const code = await new Promise<number>((resolve) => {
      const child = spawn(command[0], command.slice(1), { stdio: 'inherit', env: { ...process.env, ETCD_LOCK_KEY: mutex.key, ETCD_LOCK_REV: mutex.revision.toString() } });
      child.on('exit', (exitCode) => resolve(exitCode ?? 1));
      child.on('error', () => resolve(1));
    });
    await mutex.unlock();
    await session.close();
    if (code !== 0) process.exitCode = code;
    return;
  }
  const kv = await client.get(mutex.key);
  if (kv === undefined) throw new CliError('lock lost on init');
  await out(format.formatKeyValue(kv, { hex: settings.hex }));
  const outcome = await Promise.race([stop.then(() => 'signal' as const), session.done().then(() => 'expired' as const)]);
  if (outcome === 'expired') throw new CliError('session expired');
  await mutex.unlock();
  await session.close();
};

const electAction: Action = async (settings, client, args, flags) => {
  const listen = bool(flags, 'listen');
  if (args.length !== (listen ? 1 : 2)) throw new CliError(listen ? 'elect takes one election name argument in listen mode' : 'elect takes one election name argument and one proposal argument.', ExitCode.badArgs);
  const controller = new AbortController();
  const stop = interrupted();
  void stop.then(() => controller.abort());
  if (listen) {
    const session = await client.session({ ttl: Number(parseInt64(str(flags, 'ttl') || '60', 'ttl')) });
    const election = client.election(args[0], { session });
    try {
      for await (const leader of election.observe({ signal: controller.signal })) {
        await out(format.formatKeyValue(leader, { hex: settings.hex }));
      }
    } catch (error: unknown) {
      if (!controller.signal.aborted) throw error;
    } finally {
      await session.close();
    }
    return;
  }
  const session = await client.session({ ttl: Number(parseInt64(str(flags, 'ttl') || '60', 'ttl')) });
  const election = client.election(args[0], { session });
  try {
    await election.campaign(args[1], { signal: controller.signal });
  } catch (error: unknown) {
    await session.close();
    if (controller.signal.aborted) return;
    throw error;
  }
  const kv = await client.get(election.key);
  if (kv !== undefined) await out(format.formatKeyValue(kv, { hex: settings.hex }));
  const outcome = await Promise.race([stop.then(() => 'signal' as const), session.done().then(() => 'expired' as const)]);
  if (outcome === 'expired') throw new CliError('elect: session expired');
  await election.resign();
  await session.close();
};

// ---------------------------------------------------------------------------------------------
// Registration

/** Adds every kvctl command to `program`. */
export function addCommands(program: Command): void {
  program
    .command('put')
    .description('Puts the given key into the store')
    .argument('[key]')
    .argument('[value]')
    .option('--lease <id>', 'lease ID (in hexadecimal) to attach to the key', '0')
    .option('--prev-kv', 'return the previous key-value pair before modification')
    .option('--ignore-value', 'updates the key using its current value')
    .option('--ignore-lease', 'updates the key using its current lease')
    .allowExcessArguments(true)
    .action(run(putAction));

  program
    .command('get')
    .description('Gets the key or a range of keys')
    .argument('[key]')
    .argument('[range_end]')
    .option('--consistency <l|s>', 'Linearizable(l) or Serializable(s)', 'l')
    .option('--order <order>', 'Order of results; ASCEND or DESCEND (ASCEND by default)', '')
    .option('--sort-by <target>', 'Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION', '')
    .option('--limit <n>', 'Maximum number of results', '0')
    .option('--prefix', 'Get keys with matching prefix')
    .option('--from-key', 'Get keys that are greater than or equal to the given key using byte compare')
    .option('--rev <rev>', 'Specify the kv revision', '0')
    .option('--keys-only', 'Get only the keys')
    .option('--count-only', 'Get only the count')
    .option('--print-value-only', 'Only write values when using the "simple" output format')
    .allowExcessArguments(true)
    .action(run(getAction));

  program
    .command('del')
    .description('Removes the specified key or range of keys [key, range_end)')
    .argument('[key]')
    .argument('[range_end]')
    .option('--prefix', 'delete keys with matching prefix')
    .option('--prev-kv', 'return deleted key-value pairs')
    .option('--from-key', 'delete keys that are greater than or equal to the given key using byte compare')
    .allowExcessArguments(true)
    .action(run(delAction));

  program
    .command('txn')
    .description('Txn processes all the requests in one transaction')
    .option('-i, --interactive', 'Input transaction in interactive mode')
    .action(run(txnAction));

  program
    .command('compaction')
    .description('Compacts the event history in etcd')
    .argument('[revision]')
    .option('--physical', 'Wait until compaction physically removes all old revisions')
    .allowExcessArguments(true)
    .action(run(compactionAction));

  program
    .command('watch')
    .description('Watches events stream on keys or prefixes')
    .argument('[key]')
    .argument('[range_end]')
    .option('-i, --interactive', 'Interactive mode')
    .option('--prefix', 'Watch on a prefix if prefix is set')
    .option('--rev <rev>', 'Revision to start watching', '0')
    .option('--prev-kv', 'get the previous key-value pair before the event happens')
    .allowExcessArguments(true)
    .action(run(watchAction));

  const lease = program.command('lease').description('Lease related commands');
  lease.command('grant').argument('[ttl]').description('Creates leases').allowExcessArguments(true).action(run(leaseGrantAction));
  lease.command('revoke').argument('[leaseID]').description('Revokes leases').allowExcessArguments(true).action(run(leaseRevokeAction));
  lease.command('timetolive').argument('[leaseID]').option('--keys', 'Get keys attached to this lease').description('Get lease information').allowExcessArguments(true).action(run(leaseTimeToLiveAction));
  lease.command('list').description('List all active leases').action(run(leaseListAction));
  lease.command('keep-alive').argument('[leaseID]').option('--once', 'Resets the keep-alive time to its original value and exits immediately').description('Keeps leases alive (renew)').allowExcessArguments(true).action(run(leaseKeepAliveAction));

  const member = program.command('member').description('Membership related commands');
  member.command('list').description('Lists all members in the cluster').action(run(memberListAction));

  const endpoint = program.command('endpoint').description('Endpoint related commands');
  endpoint.command('health').option('--cluster', 'use all endpoints from the cluster member list').description('Checks the healthiness of endpoints specified in `--endpoints` flag').action(run(endpointHealthAction));
  endpoint.command('status').option('--cluster', 'use all endpoints from the cluster member list').description('Prints out the status of endpoints specified in `--endpoints` flag').action(run(endpointStatusAction));
  endpoint
    .command('hashkv')
    .option('--cluster', 'use all endpoints from the cluster member list')
    .option('--rev <rev>', 'maximum revision to hash (default: all revisions)', '0')
    .description('Prints the KV history hash for each endpoint in --endpoints')
    .action(run(endpointHashKvAction));

  program
    .command('lock')
    .description('Acquires a named lock')
    .argument('[lockname]')
    .argument('[command...]')
    .option('--ttl <seconds>', 'timeout for session', '10')
    .action(run(lockAction));

  program
    .command('elect')
    .description('Observes and participates in leader election')
    .argument('[election-name]')
    .argument('[proposal]')
    .addOption(new Option('-l, --listen', 'observation mode'))
    .option('--ttl <seconds>', 'timeout for session', '60')
    .allowExcessArguments(true)
    .action(run(electAction));
}
