/**
 * kvctl's `snapshot save|status|restore` (etcdctl 3.4's verbs, flags, messages and exit codes)
 * and `backup` (kvd's incremental backup). Parse and validate here; the work is the client's
 * (save, backup, reading a backup) and the server's offline restore (src/server/restore.ts).
 */
import type { Command } from 'commander';
import { describeBackup, isDirectory, planRestore, runBackup, type BackupEventReport, type BackupRestorePlan, type Client, type SnapshotProgress } from '../../src/client/index.js';
import type { RestoreEvent } from '../../src/server/restore.js';

// The server's restore code (store, WAL, raft) is loaded only by the commands that need it:
// every other kvctl command starts without it.
const restoreModule = (): Promise<typeof import('../../src/server/restore.js')> => import('../../src/server/restore.js');
const configModule = (): Promise<typeof import('../../src/server/config.js')> => import('../../src/server/config.js');
import { CliError, ExitCode, err, interrupted, out, print, parseInt64, type Settings } from './context.js';
import * as format from './format.js';

type Action = (settings: Settings, client: Client, args: string[], flags: Record<string, unknown>) => Promise<void>;
type Run = (action: Action) => (...parameters: unknown[]) => Promise<void>;

/** Progress lines at most this often when stderr is not a terminal. */
const PROGRESS_INTERVAL_MS = 1000;

function str(flags: Record<string, unknown>, name: string): string {
  const value = flags[name];
  return typeof value === 'string' ? value : '';
}

/** Writes progress to stderr: one rewritten line on a terminal, a line per interval otherwise. */
function progressPrinter(): { update(text: string): void; done(): void } {
  const tty = process.stderr.isTTY === true;
  let last = 0;
  let shown = false;
  return {
    update(text: string): void {
      const now = Date.now();
      if (now - last < (tty ? 100 : PROGRESS_INTERVAL_MS)) return;
      last = now;
      shown = true;
      process.stderr.write(tty ? `\r\x1b[K${text}` : `${text}\n`);
    },
    done(): void {
      if (tty && shown) process.stderr.write('\n');
    },
  };
}

// ---------------------------------------------------------------------------------------------
// snapshot save / status

const snapshotSaveAction: Action = async (settings, client, args) => {
  if (args.length !== 1) throw new CliError('snapshot save expects one argument', ExitCode.badArgs);
  if (settings.endpoints.length !== 1) throw new CliError(`snapshot must be requested to one selected node, not multiple [${settings.endpoints.join(' ')}]`, ExitCode.interrupted);
  const [path] = args;
  const endpoint = settings.endpoints[0];
  const progress = progressPrinter();
  const onProgress = (p: SnapshotProgress): void => progress.update(`Downloading snapshot from ${endpoint}: ${format.formatTransferProgress(p)}`);
  let saved;
  try {
    saved = await client.saveSnapshot(endpoint, path, { onProgress, dialTimeoutMs: settings.dialTimeoutMs });
  } finally {
    progress.done();
  }
  const revision = saved.header === undefined ? '' : `, revision ${saved.header.revision}`;
  await err(`Fetched snapshot from ${endpoint}: ${format.formatTransferProgress({ receivedBytes: saved.sizeBytes, totalBytes: undefined, elapsedMs: saved.durationMs })} in ${format.goDuration(saved.durationMs)}${revision}, sha256 verified\n`);
  await out(`Snapshot saved at ${path}\n`);
};

const snapshotStatusAction: Action = async (settings, _client, args) => {
  if (args.length !== 1) throw new CliError('snapshot status requires exactly one argument', ExitCode.badArgs);
  const { snapshotStatus } = await restoreModule();
  const status = await snapshotStatus(args[0]).catch((error: unknown) => {
    throw fileError(error, args[0]);
  });
  await print(format.formatSnapshotStatus(status, settings.format), settings.format);
};

/** Go's `stat <path>: no such file or directory` for a missing file, as etcdctl prints it. */
function fileError(error: unknown, path: string): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new CliError(`stat ${path}: no such file or directory`);
  if (code === 'EISDIR') return new CliError(`read ${path}: is a directory`);
  return error;
}

// ---------------------------------------------------------------------------------------------
// snapshot restore

/** etcd's zap JSON line (kvctl prints etcdctl's restore log lines, minus the caller). */
function logLine(msg: string, fields: Record<string, unknown>): string {
  return `${JSON.stringify({ level: 'info', ts: Date.now() / 1000, msg, ...fields })}\n`;
}

const snapshotRestoreAction: Action = async (_settings, _client, args, flags) => {
  if (args.length !== 1) throw new CliError('snapshot restore requires exactly one argument', ExitCode.badArgs);
  const [source] = args;
  const name = str(flags, 'name');
  const dataDir = str(flags, 'dataDir') === '' ? `${name}.etcd` : str(flags, 'dataDir');
  const walDir = str(flags, 'walDir');
  if (walDir !== '' && walDir !== `${dataDir}/member/wal`) throw new CliError(`--wal-dir is not supported: kvd keeps the WAL in <data-dir>/member/wal (${dataDir}/member/wal)`, ExitCode.badFeature);
  let initialCluster: Map<string, string[]>;
  let advertisePeerUrls: string[];
  const { parseInitialCluster, parseUrls } = await configModule();
  const { restoreMember } = await restoreModule();
  try {
    initialCluster = parseInitialCluster(str(flags, 'initialCluster'));
    advertisePeerUrls = parseUrls(str(flags, 'initialAdvertisePeerUrls'), '--initial-advertise-peer-urls');
  } catch (error: unknown) {
    throw new CliError(error instanceof Error ? error.message : String(error));
  }
  const toRevisionText = str(flags, 'toRevision');
  const toRevision = toRevisionText === '' ? undefined : parseInt64(toRevisionText, 'to-revision');
  const fromBackup = await isDirectory(source);
  if (toRevision !== undefined && !fromBackup) throw new CliError('--to-revision needs a backup directory (kvctl backup --to DIR), not a snapshot file', ExitCode.badArgs);
  const paths = { 'wal-dir': `${dataDir}/member/wal`, 'data-dir': dataDir, 'snap-dir': `${dataDir}/member/snap` };
  let plan: BackupRestorePlan | undefined;
  if (fromBackup) {
    plan = await planRestore(source, toRevision);
    await err(logLine('restoring from backup', { path: source, chain: plan.chain, snapshot: plan.snapshotPath, 'snapshot-revision': Number(plan.snapshotRevision), 'to-revision': Number(plan.toRevision) }));
  }
  const onEvent = (event: RestoreEvent): void => {
    switch (event.type) {
      case 'restoring':
        process.stderr.write(logLine('restoring snapshot', { path: plan?.snapshotPath ?? source, ...paths }));
        break;
      case 'member-added':
        process.stderr.write(logLine('added member', { 'cluster-id': event.clusterId, 'local-member-id': '0', 'added-peer-id': event.memberId, 'added-peer-peer-urls': event.peerUrls }));
        break;
      case 'rolled-forward':
        process.stderr.write(logLine('rolled forward', { 'from-revision': event.fromRevision, 'to-revision': event.toRevision, revisions: event.revisions }));
        break;
      case 'restored':
        process.stderr.write(logLine('restored snapshot', { path: plan?.snapshotPath ?? source, ...paths, revision: event.revision, hash: event.hash }));
        break;
    }
  };
  try {
    await restoreMember({
      snapshotPath: plan?.snapshotPath ?? source,
      hashCheck: flags.skipHashCheck === true ? 'skip' : 'verify',
      name, initialCluster, initialClusterToken: str(flags, 'initialClusterToken'), initialAdvertisePeerUrls: advertisePeerUrls, dataDir,
      pointInTime: plan === undefined ? undefined : { toRevision: Number(plan.toRevision), revisions: plan.revisions, leaseTtls: plan.leaseTtls },
      logger: onEvent,
    });
  } catch (error: unknown) {
    throw fileError(error, source);
  }
};

// ---------------------------------------------------------------------------------------------
// backup

const backupAction: Action = async (_settings, client, _args, flags) => {
  const dir = str(flags, 'to');
  if (dir === '') throw new CliError('backup needs --to DIR', ExitCode.badArgs);
  const controller = new AbortController();
  // Detached on purpose: resolves on SIGINT/SIGTERM (or never); the backup then stops cleanly.
  void interrupted().then(() => controller.abort());
  const progress = progressPrinter();
  const line = (text: string): void => {
    progress.done();
    process.stderr.write(`${text}\n`);
  };
  let lastFlushLine = 0;
  const onEvent = (event: BackupEventReport): void => {
    switch (event.type) {
      case 'resumed':
        line(`resuming chain ${event.chain} from revision ${event.fromRevision}${event.truncated === undefined ? '' : ` (dropped ${event.truncated.droppedBytes} bytes of a torn record at the end of ${event.truncated.file}: ${event.truncated.why})`}`);
        break;
      case 'snapshot-started':
        line(`taking full snapshot ${event.chain} from ${event.endpoint}${event.reason === 'compacted' ? ' (the cluster compacted the revision to resume from)' : ''}`);
        break;
      case 'snapshot-progress':
        progress.update(`downloading: ${format.formatTransferProgress(event.progress)}`);
        break;
      case 'snapshot-failed':
        line(`snapshot from ${event.endpoint} failed: ${event.error}`);
        break;
      case 'snapshot-saved':
        line(`full snapshot ${event.chain} saved: revision ${event.revision}, ${format.humanizeBytes(BigInt(event.sizeBytes))} in ${format.goDuration(event.durationMs)} (${event.file}); following changes from revision ${event.revision + 1n}`);
        break;
      case 'compacted':
        line(`revision ${event.fromRevision} has been compacted (compact revision ${event.compactRevision}): taking a new full snapshot; revisions from ${event.fromRevision} up to the new snapshot's are not restorable one by one`);
        break;
      case 'flushed': {
        const now = Date.now();
        if (now - lastFlushLine >= PROGRESS_INTERVAL_MS) {
          lastFlushLine = now;
          line(`backed up to revision ${event.revision} (${event.file})`);
        }
        break;
      }
      case 'segment-sealed':
        line(`sealed ${event.file} at revision ${event.lastRevision}`);
        break;
      case 'stopped':
        line(`stopped: backed up to revision ${event.revision}`);
        break;
    }
  };
  const flushIntervalText = str(flags, 'flushInterval');
  const stopped = await runBackup(client, { dir, signal: controller.signal, onEvent, flushIntervalMs: flushIntervalText === '' ? undefined : parseFlushInterval(flushIntervalText) });
  if (stopped.revision === 0n) return; // stopped before its first snapshot: nothing is restorable yet
  const description = await describeBackup(dir);
  await out(`${description.chains.map((chain) => `chain ${chain.chain}: revisions ${chain.snapshotRevision}..${chain.lastRevision} restorable\n`).join('')}`);
};

function parseFlushInterval(text: string): number {
  const match = /^([0-9]+)(ms|s)$/.exec(text);
  if (match === null) throw new CliError(`invalid duration "${text}" for --flush-interval (use e.g. 200ms or 1s)`, ExitCode.badArgs);
  return Number(match[1]) * (match[2] === 's' ? 1000 : 1);
}

/** Registers `snapshot save|status|restore` and `backup`. */
export function addSnapshotCommands(program: Command, run: Run): void {
  const snapshot = program.command('snapshot').description('Manages etcd node snapshots');
  snapshot.command('save').description('Stores an etcd node backend snapshot to a given file').argument('[filename]').allowExcessArguments(true).action(run(snapshotSaveAction));
  snapshot.command('status').description('Gets backend snapshot status of a given file').argument('[filename]').allowExcessArguments(true).action(run(snapshotStatusAction));
  snapshot
    .command('restore')
    .description('Restores an etcd member snapshot to an etcd directory; with a kvctl backup directory, to any revision it holds (--to-revision)')
    .argument('[filename]')
    .option('--data-dir <dir>', 'Path to the data directory', '')
    .option('--wal-dir <dir>', 'Path to the WAL directory (use --data-dir if none given)', '')
    .option('--initial-cluster <cluster>', 'Initial cluster configuration for restore bootstrap', 'default=http://localhost:2380')
    .option('--initial-cluster-token <token>', 'Initial cluster token for the etcd cluster during restore bootstrap', 'etcd-cluster')
    .option('--initial-advertise-peer-urls <urls>', "List of this member's peer URLs to advertise to the rest of the cluster", 'http://localhost:2380')
    .option('--name <name>', 'Human-readable name for this member', 'default')
    .option('--skip-hash-check', 'Ignore snapshot integrity hash value (required if copied from data directory)')
    .option('--to-revision <revision>', 'kvd: restore a backup directory as it was at this revision (default: its newest)', '')
    .allowExcessArguments(true)
    .action(run(snapshotRestoreAction));
  program
    .command('backup')
    .description('kvd: takes a full snapshot into --to DIR, then appends every later revision to it until interrupted (SIGINT/SIGTERM); resumes where it stopped when run again with the same DIR')
    .option('--to <dir>', 'backup directory', '')
    .option('--flush-interval <duration>', 'longest time a received revision waits before it is made durable', '200ms')
    .action(run(backupAction));
}
