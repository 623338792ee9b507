/**
 * kvctl's commands, with etcdctl 3.4's verbs, flags, argument checks and messages. Each action
 * parses and validates, calls the client, and prints through format.ts.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { Command, Option } from 'commander';
import { CancelledError, KvError, replaceMember, startSettings, type Client, type MemberAddResult, type MemberListResult, type RangeOptions, type SortOrder, type SortTarget, type StatusResult, type HashKvResult } from '../../src/client/index.js';
import { CliError, ExitCode, clientFor, err, interrupted, out, parseDuration, parseInt64, parseLeaseId, print, readStdin, settingsFrom, type GlobalFlags, type Settings } from './context.js';
import * as format from './format.js';
import { parseCompare, parseRequest, TxnParseError } from './txn.js';
import { addSnapshotCommands } from './snapshot.js';
import { addAuthCommands } from './auth.js';

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
  let message = error instanceof Error ? error.message : String(error);
  // Errors etcd's client does not know by text print as their gRPC status, as etcdctl does.
  if (error instanceof KvError && error.grpcCode === 2 && !message.startsWith('etcdserver: ')) message = `rpc error: code = Unknown desc = ${message}`;
  await err(`Error: ${message}\n`);
  // etcdctl authenticates while it connects: a refused login is a connection failure (exit 2).
  const loginRefused = error instanceof KvError && (error.code === 'auth-failed' || error.code === 'auth-no-password-user');
  process.exitCode = loginRefused || (error instanceof KvError && error.grpcCode === -1 && /connect/.test(message)) ? ExitCode.badConnection : ExitCode.error;
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

/** Parses a member id as etcdctl does (`strconv.ParseUint(arg, 16, 64)`). */
export function parseMemberId(text: string): bigint {
  const reason = !/^[0-9a-fA-F]+$/.test(text) ? 'invalid syntax' : BigInt(`0x${text}`) >= 1n << 64n ? 'value out of range' : undefined;
  if (reason !== undefined) throw new CliError(`bad member ID arg (strconv.ParseUint: parsing ${JSON.stringify(text)}: ${reason}), expecting ID in Hex`, ExitCode.badArgs);
  return BigInt(`0x${text}`);
}

/** The `--peer-urls` list, or etcdctl's error when it is empty. */
function peerUrlsFlag(flags: Record<string, unknown>): string[] {
  const text = str(flags, 'peerUrls');
  if (text === '') throw new CliError('member peer urls not provided', ExitCode.badArgs);
  return text.split(',');
}

/** How many times `member add` re-reads a membership served by another member than the add. */
const MEMBER_LIST_SAME_MEMBER_ATTEMPTS = 5;

/**
 * The membership as the member that answered `added` sees it, as etcdctl reads it after an
 * add: when another member answers the list, a linearizable read brings that member up to
 * date and the list is read again (bounded here; etcdctl loops).
 */
async function membershipAfter(client: Client, added: MemberAddResult): Promise<MemberListResult> {
  let list = await client.cluster.memberList();
  for (let attempt = 1; attempt < MEMBER_LIST_SAME_MEMBER_ATTEMPTS && list.header.memberId !== added.header.memberId; attempt += 1) {
    await client.get('_');
    list = await client.cluster.memberList();
  }
  return list;
}

const memberAddAction: Action = async (settings, client, args, flags) => {
  if (args.length < 1) throw new CliError('member name not provided', ExitCode.badArgs);
  if (args.length > 1) {
    const hints = args.filter((arg) => arg.toLowerCase().startsWith('http')).map((arg) => `, did you mean --peer-urls=${arg}`);
    throw new CliError(`too many arguments${hints.join('')}`, ExitCode.badArgs);
  }
  const peerUrls = peerUrlsFlag(flags);
  const isLearner = bool(flags, 'learner');
  const autoPromote = bool(flags, 'autoPromote');
  if (autoPromote && !isLearner) throw new CliError('--auto-promote needs --learner', ExitCode.badArgs);
  const result = await client.cluster.memberAdd({ peerUrls, isLearner, autoPromote });
  await print(format.formatMemberAdd(result, settings.format), settings.format);
  if (settings.format !== 'simple') return;
  const list = await membershipAfter(client, result);
  await out(format.formatStartSettings(startSettings(list.members, { id: result.member.id, name: args[0], peerUrls: result.member.peerUrls })));
};

/** The member id argument of remove, update and promote. */
function memberIdArgument(args: string[]): bigint {
  if (args.length !== 1) throw new CliError('member ID is not provided', ExitCode.badArgs);
  return parseMemberId(args[0]);
}

const memberRemoveAction: Action = async (settings, client, args) => {
  const id = memberIdArgument(args);
  const result = await client.cluster.memberRemove(id);
  await print(format.formatMemberChange('removed', id, result, settings.format), settings.format);
};

const memberUpdateAction: Action = async (settings, client, args, flags) => {
  const id = memberIdArgument(args);
  const peerUrls = peerUrlsFlag(flags);
  const result = await client.cluster.memberUpdate(id, peerUrls);
  await print(format.formatMemberChange('updated', id, result, settings.format), settings.format);
};

const memberPromoteAction: Action = async (settings, client, args) => {
  const id = memberIdArgument(args);
  const result = await client.cluster.memberPromote(id);
  await print(format.formatMemberChange('promoted', id, result, settings.format), settings.format);
};

const memberReplaceAction: Action = async (settings, client, args, flags) => {
  if (args.length !== 1) throw new CliError('member replace needs the member to replace (name or hex ID) as its argument', ExitCode.badArgs);
  const name = str(flags, 'name');
  if (name === '') throw new CliError('member replace needs --name for the new member', ExitCode.badArgs);
  const peerUrls = peerUrlsFlag(flags);
  const timeoutMs = parseDuration(str(flags, 'timeout'));
  const pollIntervalMs = parseDuration(str(flags, 'pollInterval'));
  if (settings.format === 'table') throw new CliError('table not supported as output format', ExitCode.badFeature);
  const labels = { old: args[0], name };
  const write = (text: string): void => {
    // Synchronous on pipes and files (Node), so lines keep their order with later output.
    if (text !== '') process.stdout.write(text);
  };
  const controller = new AbortController();
  void interrupted().then(() => controller.abort());
  try {
    await replaceMember(client.cluster, {
      old: args[0],
      name,
      peerUrls,
      timeoutMs,
      pollIntervalMs,
      signal: controller.signal,
      onEvent: (event) => write(settings.format === 'json' ? format.formatReplaceEventJson(event) : format.formatReplaceEvent(event, labels)),
    });
  } catch (error: unknown) {
    if (error instanceof CancelledError && controller.signal.aborted) throw new CliError(error.message, ExitCode.interrupted);
    throw error;
  }
  await out('');
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

// ---------------------------------------------------------------------------------------------
// Alarms and defragmentation

const alarmListAction: Action = async (settings, client, args) => {
  if (args.length !== 0) throw new CliError('alarm list command accepts no arguments', ExitCode.badArgs);
  if (settings.format === 'table') throw new CliError('table not supported as output format', ExitCode.badFeature);
  await out(format.formatAlarms(await client.cluster.alarmList({ timeoutMs: settings.commandTimeoutMs }), settings.format));
};

const alarmDisarmAction: Action = async (settings, client, args) => {
  if (args.length !== 0) throw new CliError('alarm disarm command accepts no arguments', ExitCode.badArgs);
  if (settings.format === 'table') throw new CliError('table not supported as output format', ExitCode.badFeature);
  await out(format.formatAlarms(await client.cluster.alarmDisarm(undefined, { timeoutMs: settings.commandTimeoutMs }), settings.format));
};

/** `defrag`: each endpoint in turn (etcdctl's order); a failure is reported and the next one tried. */
const defragAction: Action = async (settings, client, _args, flags) => {
  const endpoints = await endpointsFor(settings, client, flags);
  let failed = false;
  for (const endpoint of endpoints) {
    try {
      await client.cluster.defragment(endpoint, { timeoutMs: settings.commandTimeoutMs });
      await out(format.formatDefragmented(endpoint));
    } catch (error: unknown) {
      failed = true;
      await err(`Failed to defragment etcd member[${endpoint}] (${error instanceof Error ? error.message : String(error)})\n`);
    }
  }
  if (failed) process.exitCode = ExitCode.error;
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
  addAuthCommands(program, run);
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
  member
    .command('add')
    .description('Adds a member into the cluster')
    .argument('[memberName]')
    .option('--peer-urls <urls>', 'comma separated peer URLs for the new member.', '')
    .option('--learner', 'indicates if the new member is raft learner')
    .option('--auto-promote', 'kvd only (with --learner): the leader promotes the learner once it is in sync; etcd ignores it')
    .allowExcessArguments(true)
    .action(run(memberAddAction));
  member.command('remove').description('Removes a member from the cluster').argument('[memberID]').allowExcessArguments(true).action(run(memberRemoveAction));
  member
    .command('update')
    .description('Updates a member in the cluster')
    .argument('[memberID]')
    .option('--peer-urls <urls>', 'comma separated peer URLs for the updated member.', '')
    .allowExcessArguments(true)
    .action(run(memberUpdateAction));
  member.command('promote').description('Promotes a non-voting member in the cluster').argument('[memberID]').allowExcessArguments(true).action(run(memberPromoteAction));
  member
    .command('replace')
    .description('Replaces a member (name or hex ID) with a new one: adds it as a learner, waits for it to be started and to catch up, promotes it, removes the old one. Safe to run again after an interruption: it resumes.')
    .argument('[member]')
    .option('--name <name>', 'name of the new member', '')
    .option('--peer-urls <urls>', 'comma separated peer URLs of the new member (they identify it when resuming)', '')
    .option('--timeout <duration>', 'deadline of the whole replacement', '10m')
    .option('--poll-interval <duration>', 'pause between progress checks (50ms..5s)', '500ms')
    .allowExcessArguments(true)
    .action(run(memberReplaceAction));

  const endpoint = program.command('endpoint').description('Endpoint related commands');
  endpoint.command('health').option('--cluster', 'use all endpoints from the cluster member list').description('Checks the healthiness of endpoints specified in `--endpoints` flag').action(run(endpointHealthAction));
  endpoint.command('status').option('--cluster', 'use all endpoints from the cluster member list').description('Prints out the status of endpoints specified in `--endpoints` flag').action(run(endpointStatusAction));
  endpoint
    .command('hashkv')
    .option('--cluster', 'use all endpoints from the cluster member list')
    .option('--rev <rev>', 'maximum revision to hash (default: all revisions)', '0')
    .description('Prints the KV history hash for each endpoint in --endpoints')
    .action(run(endpointHashKvAction));

  const alarm = program.command('alarm').description('Alarm related commands');
  alarm.command('list').description('Lists all alarms').allowExcessArguments(true).action(run(alarmListAction));
  alarm.command('disarm').description('Disarms all alarms').allowExcessArguments(true).action(run(alarmDisarmAction));

  program
    .command('defrag')
    .description('Defragments the storage of the etcd members with given endpoints')
    .option('--cluster', 'use all endpoints from the cluster member list')
    .action(run(defragAction));

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

  addSnapshotCommands(program, run);
}
