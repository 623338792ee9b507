/**
 * kvctl's output formats, byte-compatible with etcdctl 3.4: `simple` lines, `json` as Go's
 * encoding/json prints etcd's response structs (snake_case names, omitted zero values, 64-bit
 * numbers unquoted and exact, bytes as base64), and `table` as etcdctl's tablewriter layout.
 */
import { hexId, type AlarmName, type AlarmResult, type MemberAddResult, type MemberListResult, type MemberStartSettings, type ReplaceEvent, type KeyValue, type ResponseHeader, type RangeResult, type PutResult, type DeleteResult, type TxnResult, type OperationResult, type WatchEvent, type Member, type StatusResult, type HashKvResult, type HealthResult, type LeaseGrantResult, type LeaseKeepAliveResult, type LeaseTimeToLiveResult } from '../../src/client/index.js';

/** Output format selected with -w/--write-out. */
export type OutputFormat = 'simple' | 'json' | 'table';

// ---------------------------------------------------------------------------------------------
// Go-compatible JSON

/** A value the Go-JSON writer can print. `undefined` members are omitted (omitempty). */
export type GoJson = bigint | number | string | boolean | null | Buffer | readonly GoJson[] | { readonly [key: string]: GoJson | undefined };

/** Escapes a string as Go's json.Marshal does (HTML-safe). */
function goString(text: string): string {
  return JSON.stringify(text)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

/** Serialises a {@link GoJson} value compactly, the way Go's json.Marshal would. */
export function goJson(value: GoJson): string {
  if (value === null) return 'null';
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : 'null';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'string') return goString(value);
  if (Buffer.isBuffer(value)) return goString(value.toString('base64'));
  if (Array.isArray(value)) return `[${(value as readonly GoJson[]).map(goJson).join(',')}]`;
  const parts: string[] = [];
  for (const [key, member] of Object.entries(value as { [key: string]: GoJson | undefined })) {
    if (member === undefined) continue;
    parts.push(`${goString(key)}:${goJson(member)}`);
  }
  return `{${parts.join(',')}}`;
}

/** omitempty: undefined for Go zero values (0, "", false, empty slices/bytes, nil). */
function oe<T extends GoJson>(value: T | undefined): T | undefined {
  if (value === undefined || value === null) return undefined;
  if (value === 0n || value === 0 || value === '' || value === false) return undefined;
  if (Buffer.isBuffer(value) && value.length === 0) return undefined;
  if (Array.isArray(value) && value.length === 0) return undefined;
  return value;
}

/** pb.ResponseHeader as JSON. */
export function headerJson(header: ResponseHeader): GoJson {
  return { cluster_id: oe(header.clusterId), member_id: oe(header.memberId), revision: oe(header.revision), raft_term: oe(header.raftTerm) };
}

/** The header's fields inlined (clientv3 response types embed *pb.ResponseHeader). */
function headerFields(header: ResponseHeader): { [key: string]: GoJson | undefined } {
  return headerJson(header) as { [key: string]: GoJson | undefined };
}

/** mvccpb.KeyValue as JSON. */
export function kvJson(kv: KeyValue): GoJson {
  return { key: oe(kv.key), create_revision: oe(kv.createRevision), mod_revision: oe(kv.modRevision), version: oe(kv.version), value: oe(kv.value), lease: oe(kv.lease) };
}

function rangeJson(result: RangeResult): GoJson {
  return { header: headerJson(result.header), kvs: oe(result.kvs.map(kvJson)), more: oe(result.more), count: oe(result.count) };
}

function putJson(result: PutResult): GoJson {
  return { header: headerJson(result.header), prev_kv: result.prevKv === undefined ? undefined : kvJson(result.prevKv) };
}

function deleteJson(result: DeleteResult): GoJson {
  return { header: headerJson(result.header), deleted: oe(result.deleted), prev_kvs: oe(result.prevKvs.map(kvJson)) };
}

function operationJson(result: OperationResult): GoJson {
  switch (result.type) {
    case 'range':
      return { Response: { ResponseRange: rangeJson(result) } };
    case 'put':
      return { Response: { ResponsePut: putJson(result) } };
    case 'delete':
      return { Response: { ResponseDeleteRange: deleteJson(result) } };
    case 'txn':
      return { Response: { ResponseTxn: txnJson(result) } };
  }
}

function txnJson(result: TxnResult): GoJson {
  return { header: headerJson(result.header), succeeded: oe(result.succeeded), responses: oe(result.responses.map(operationJson)) };
}

// ---------------------------------------------------------------------------------------------
// Simple-format helpers

/** Options shared by the simple printers. */
export interface SimpleOptions {
  /** Print keys and values as `\x..` hex escapes (etcdctl --hex). */
  readonly hex?: boolean;
  /** Print only values (etcdctl --print-value-only). */
  readonly valueOnly?: boolean;
}

function hexEscape(bytes: Buffer): string {
  let out = '';
  for (const byte of bytes) out += `\\x${byte.toString(16).padStart(2, '0')}`;
  return out;
}

function bytesText(bytes: Buffer, options: SimpleOptions): string {
  return options.hex === true ? hexEscape(bytes) : bytes.toString('utf8');
}

/** etcdctl printKV: key line (unless value-only) then value line. */
function simpleKv(kv: KeyValue, options: SimpleOptions): string {
  const value = `${bytesText(kv.value, options)}\n`;
  return options.valueOnly === true ? value : `${bytesText(kv.key, options)}\n${value}`;
}

// ---------------------------------------------------------------------------------------------
// Table (olekukonko/tablewriter as etcdctl configures it: centred headers, right-aligned cells)

/** Renders a table the way etcdctl does. */
export function table(headers: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)));
  const border = `+${widths.map((width) => '-'.repeat(width + 2)).join('+')}+\n`;
  const centre = (text: string, width: number): string => {
    const gap = width - text.length;
    const left = Math.floor(gap / 2);
    return ' '.repeat(left) + text + ' '.repeat(gap - left);
  };
  const headerLine = `|${headers.map((header, column) => ` ${centre(header, widths[column])} `).join('|')}|\n`;
  const rowLines = rows.map((row) => `|${widths.map((width, column) => ` ${(row[column] ?? '').padStart(width)} `).join('|')}|\n`).join('');
  return border + headerLine + border + rowLines + border;
}

// ---------------------------------------------------------------------------------------------
// Go value formatting

/** go-humanize Bytes(): SI units, one decimal below 10. */
export function humanizeBytes(size: bigint): string {
  const value = Number(size);
  if (value < 10) return `${value} B`;
  const sizes = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB'];
  const exponent = Math.floor(Math.log(value) / Math.log(1000));
  const scaled = Math.floor((value / 1000 ** exponent) * 10 + 0.5) / 10;
  const text = scaled < 10 ? goFixed(scaled, 1) : goFixed(scaled, 0);
  return `${text} ${sizes[exponent]}`;
}

/** Go's %.Nf: round half to even on the exact binary value. */
function goFixed(value: number, digits: number): string {
  const factor = 10 ** digits;
  const scaled = value * factor;
  const floor = Math.floor(scaled);
  const diff = scaled - floor;
  let rounded = floor;
  if (diff > 0.5 || (diff === 0.5 && floor % 2 === 1)) rounded = floor + 1;
  return (rounded / factor).toFixed(digits);
}

/** Go's time.Duration String() for a duration in milliseconds. */
export function goDuration(milliseconds: number): string {
  const nanoseconds = Math.round(milliseconds * 1e6);
  if (nanoseconds === 0) return '0s';
  const trim = (text: string): string => (text.includes('.') ? text.replace(/0+$/, '').replace(/\.$/, '') : text);
  if (nanoseconds < 1000) return `${nanoseconds}ns`;
  if (nanoseconds < 1e6) return `${trim((nanoseconds / 1e3).toFixed(3))}µs`;
  if (nanoseconds < 1e9) return `${trim((nanoseconds / 1e6).toFixed(6))}ms`;
  return `${trim((nanoseconds / 1e9).toFixed(9))}s`;
}

// ---------------------------------------------------------------------------------------------
// Printers per command. Each returns the text for stdout; an undefined return means the
// format is not supported for that command (the caller prints etcdctl's error).

/** `put` output. */
export function formatPut(result: PutResult, format: OutputFormat, options: SimpleOptions = {}): string | undefined {
  if (format === 'json') return `${goJson(putJson(result))}\n`;
  if (format === 'table') return undefined;
  return `OK\n${result.prevKv === undefined ? '' : simpleKv(result.prevKv, options)}`;
}

/** `get` output. */
export function formatGet(result: RangeResult, format: OutputFormat, options: SimpleOptions = {}): string | undefined {
  if (format === 'json') return `${goJson(rangeJson(result))}\n`;
  if (format === 'table') return undefined;
  return result.kvs.map((kv) => simpleKv(kv, options)).join('');
}

/** `del` output. */
export function formatDelete(result: DeleteResult, format: OutputFormat, options: SimpleOptions = {}): string | undefined {
  if (format === 'json') return `${goJson(deleteJson(result))}\n`;
  if (format === 'table') return undefined;
  return `${result.deleted}\n${result.prevKvs.map((kv) => simpleKv(kv, options)).join('')}`;
}

/** `txn` output. */
export function formatTxn(result: TxnResult, format: OutputFormat, options: SimpleOptions = {}): string | undefined {
  if (format === 'json') return `${goJson(txnJson(result))}\n`;
  if (format === 'table') return undefined;
  let out = result.succeeded ? 'SUCCESS\n' : 'FAILURE\n';
  for (const response of result.responses) {
    out += '\n';
    switch (response.type) {
      case 'range':
        out += formatGet(response, 'simple', options) ?? '';
        break;
      case 'put':
        out += formatPut(response, 'simple', options) ?? '';
        break;
      case 'delete':
        out += formatDelete(response, 'simple', options) ?? '';
        break;
      case 'txn':
        out += `unexpected response ${goJson(txnJson(response))}\n`;
        break;
    }
  }
  return out;
}

/** One watch response (`watch` output). */
export function formatWatch(batch: { header: ResponseHeader; events: readonly WatchEvent[] }, format: OutputFormat, options: SimpleOptions = {}): string | undefined {
  if (format === 'json') {
    const events = batch.events.map((event) => ({ type: event.type === 'delete' ? 1 : undefined, kv: kvJson(event.kv), prev_kv: event.prevKv === undefined ? undefined : kvJson(event.prevKv) }));
    return `${goJson({ Header: headerJson(batch.header), Events: events.length === 0 ? null : events, CompactRevision: 0, Canceled: false, Created: false })}\n`;
  }
  if (format === 'table') return undefined;
  let out = '';
  for (const event of batch.events) {
    out += event.type === 'delete' ? 'DELETE\n' : 'PUT\n';
    if (event.prevKv !== undefined) out += simpleKv(event.prevKv, options);
    out += simpleKv(event.kv, options);
  }
  return out;
}

/**
 * etcdserverpb.Member as etcdctl's JSON prints it. kvd's `autoPromote` extension is left out:
 * etcdctl's Go types do not know it, and kvctl prints what etcdctl prints.
 */
function memberJson(member: Member): GoJson {
  return { ID: oe(member.id), name: oe(member.name), peerURLs: oe([...member.peerUrls]), clientURLs: oe([...member.clientUrls]), isLearner: oe(member.isLearner) };
}

/** A member or cluster id as etcdctl's `%16x` prints it (space-padded to 16 characters). */
export function paddedHexId(id: bigint): string {
  return hexId(id).padStart(16, ' ');
}

/** `member list` output. */
export function formatMemberList(result: { header: ResponseHeader; members: readonly Member[] }, format: OutputFormat): string {
  if (format === 'json') {
    return `${goJson({ header: headerJson(result.header), members: oe(result.members.map(memberJson)) })}\n`;
  }
  const rows = result.members.map((member) => [hexId(member.id), member.name === '' ? 'unstarted' : 'started', member.name, member.peerUrls.join(','), member.clientUrls.join(','), String(member.isLearner)]);
  if (format === 'table') return table(['ID', 'STATUS', 'NAME', 'PEER ADDRS', 'CLIENT ADDRS', 'IS LEARNER'], rows);
  return rows.map((row) => `${row.join(', ')}\n`).join('');
}

/**
 * `member add` output: json prints the response; simple prints the first line only (kvctl then
 * reads the membership and prints {@link formatStartSettings}, as etcdctl does); table is not
 * supported (etcdctl 3.4 reports it after the member was added, exit 4).
 */
export function formatMemberAdd(result: MemberAddResult, format: OutputFormat): string | undefined {
  if (format === 'json') return `${goJson({ header: headerJson(result.header), member: memberJson(result.member), members: oe(result.members.map(memberJson)) })}\n`;
  if (format === 'table') return undefined;
  return `Member ${paddedHexId(result.member.id)} added to cluster ${paddedHexId(result.header.clusterId)}\n`;
}

/** Go's %q for the printable strings these settings hold (same as JSON there). */
function goQuote(text: string): string {
  return JSON.stringify(text);
}

/** The settings block etcdctl prints after `member add` (a blank line, then `KEY="value"` lines). */
export function formatStartSettings(settings: MemberStartSettings): string {
  return [
    '',
    `ETCD_NAME=${goQuote(settings.ETCD_NAME)}`,
    `ETCD_INITIAL_CLUSTER=${goQuote(settings.ETCD_INITIAL_CLUSTER)}`,
    `ETCD_INITIAL_ADVERTISE_PEER_URLS=${goQuote(settings.ETCD_INITIAL_ADVERTISE_PEER_URLS)}`,
    `ETCD_INITIAL_CLUSTER_STATE=${goQuote(settings.ETCD_INITIAL_CLUSTER_STATE)}`,
    '',
  ].join('\n');
}

/** The membership changes printed as `Member <id> <verb> cluster <cluster id>`. */
export type MemberChange = 'removed' | 'updated' | 'promoted';

const CHANGE_WORDS: Record<MemberChange, string> = { removed: 'removed from', updated: 'updated in', promoted: 'promoted in' };

/**
 * `member remove|update|promote` output: simple `Member <%16x id> removed from cluster <%16x>`
 * (updated in, promoted in); json the response (header and members). Table is not supported
 * (after the change was made, as etcdctl). etcdctl 3.4 crashes on `member promote -w json|table`
 * (a nil printer, exit 2) after promoting; kvctl prints the json response and reports table as
 * unsupported like the other changes.
 */
export function formatMemberChange(change: MemberChange, id: bigint, result: MemberListResult, format: OutputFormat): string | undefined {
  if (format === 'json') return `${goJson({ header: headerJson(result.header), members: oe(result.members.map(memberJson)) })}\n`;
  if (format === 'table') return undefined;
  return `Member ${paddedHexId(id)} ${CHANGE_WORDS[change]} cluster ${paddedHexId(result.header.clusterId)}\n`;
}

function memberLabel(member: Member, name?: string): string {
  const known = member.name !== '' ? member.name : name;
  return known === undefined || known === '' ? hexId(member.id) : `${hexId(member.id)} (${known})`;
}

/** What `member replace` is replacing with what (for its progress lines). */
export interface ReplaceLabels {
  /** OLD as given on the command line. */
  readonly old: string;
  /** NEW's name. */
  readonly name: string;
}

/** A retry repeated for the same reason is printed on its first and every this many attempts. */
const RETRY_LINE_EVERY = 10;

/** The line(s) `member replace` prints for one progress event (maybe none), in simple format. */
export function formatReplaceEvent(event: ReplaceEvent, labels: ReplaceLabels): string {
  switch (event.type) {
    case 'step':
      return replaceStepLine(event, labels);
    case 'added':
      return `Member ${memberLabel(event.member, labels.name)} added to cluster ${hexId(event.clusterId)} as a learner\n`;
    case 'start-required':
      return `Start ${labels.name} now, with these settings (kvd takes the same as flags: --name, --initial-cluster, --initial-advertise-peer-urls, --initial-cluster-state):\n${formatStartSettings(event.settings)}\n`;
    case 'started':
      return `Member ${memberLabel(event.member, labels.name)} started, client URLs ${event.member.clientUrls.join(',')}\n`;
    case 'catching-up':
      return `Catching up: ${labels.name} applied index ${event.appliedIndex}, leader's index ${event.leaderIndex}\n`;
    case 'caught-up':
      return `Caught up: ${labels.name} applied index ${event.appliedIndex}, leader's index ${event.leaderIndex}\n`;
    case 'promoted':
      return `Member ${memberLabel(event.member, labels.name)} promoted to voter\n`;
    case 'removed':
      return `Member ${memberLabel(event.member)} removed from cluster ${hexId(event.clusterId)}\n`;
    case 'retrying':
      // The same retry again and again (etcd says "unhealthy cluster" for about 5 s after a
      // start): the first line, then one line every RETRY_LINE_EVERY attempts.
      if (event.attempt === 1) return `Retrying ${event.step}: ${event.reason}\n`;
      return event.attempt % RETRY_LINE_EVERY === 0 ? `Retrying ${event.step} (attempt ${event.attempt}): ${event.reason}\n` : '';
    case 'done':
      return `Done: ${memberLabel(event.member, labels.name)} is a voter and ${labels.old} is not a member\n`;
  }
}

function replaceStepLine(event: Extract<ReplaceEvent, { type: 'step' }>, labels: ReplaceLabels): string {
  const label = event.newMember === undefined ? labels.name : memberLabel(event.newMember, labels.name);
  const old = event.oldMember === undefined ? labels.old : memberLabel(event.oldMember);
  if (event.resumed) {
    switch (event.step) {
      case 'wait-start':
        return `Resuming: ${label} was added and has not started\n`;
      case 'promote':
        return `Resuming: ${label} has started and is a learner\n`;
      case 'remove-old':
        return `Resuming: ${label} is a voter; ${old} is still a member\n`;
      case 'done':
        return `Resuming: ${label} is a voter and ${labels.old} is not a member: nothing to do\n`;
      case 'add':
        break;
    }
  }
  switch (event.step) {
    case 'add':
      return `Replacing ${old} with ${labels.name}: adding it as a learner\n`;
    case 'wait-start':
      return `Waiting for ${label} to start\n`;
    case 'promote':
      return `Waiting for ${label} to catch up with the leader, then promoting it\n`;
    case 'remove-old':
      return `Removing ${old}\n`;
    case 'done':
      return '';
  }
}

/** One progress event as a JSON line (`member replace -w json`). */
export function formatReplaceEventJson(event: ReplaceEvent): string {
  const fields: { [key: string]: GoJson | undefined } = {};
  for (const [key, value] of Object.entries(event)) {
    if (value === undefined) continue;
    if (typeof value === 'object' && value !== null && 'peerUrls' in value) fields[key] = memberJson(value as Member);
    else fields[key] = value as GoJson;
  }
  return `${goJson(fields)}\n`;
}

/** `endpoint status` output. */
export function formatEndpointStatus(statuses: ReadonlyArray<{ endpoint: string; status: StatusResult }>, format: OutputFormat): string {
  if (format === 'json') {
    const items = statuses.map(({ endpoint, status }) => ({
      Endpoint: endpoint,
      Status: {
        header: headerJson(status.header),
        version: oe(status.version),
        dbSize: oe(status.dbSize),
        leader: oe(status.leader),
        raftIndex: oe(status.raftIndex),
        raftTerm: oe(status.raftTerm),
        raftAppliedIndex: oe(status.raftAppliedIndex),
        errors: oe([...status.errors]),
        dbSizeInUse: oe(status.dbSizeInUse),
        isLearner: oe(status.isLearner),
      },
    }));
    return `${goJson(items)}\n`;
  }
  const rows = statuses.map(({ endpoint, status }) => [
    endpoint,
    hexId(status.header.memberId),
    status.version,
    humanizeBytes(status.dbSize),
    String(status.leader === status.header.memberId),
    String(status.isLearner),
    status.raftTerm.toString(),
    status.raftIndex.toString(),
    status.raftAppliedIndex.toString(),
    status.errors.join(', '),
  ]);
  if (format === 'table') return table(['ENDPOINT', 'ID', 'VERSION', 'DB SIZE', 'IS LEADER', 'IS LEARNER', 'RAFT TERM', 'RAFT INDEX', 'RAFT APPLIED INDEX', 'ERRORS'], rows);
  return rows.map((row) => `${row.join(', ')}\n`).join('');
}

/** etcd's AlarmType numbers (etcdctl's JSON prints the enum as a number). */
const ALARM_NUMBERS: Record<AlarmName, number> = { NONE: 0, NOSPACE: 1, CORRUPT: 2 };

/**
 * `alarm list` / `alarm disarm` output: simple is Go's %+v of each AlarmMember
 * (`memberID:<decimal> alarm:NOSPACE `, zero fields left out); json the response, header included
 * only when the server sent one. etcdctl has no table printer for alarms (checked by the caller).
 */
export function formatAlarms(result: AlarmResult, format: OutputFormat): string {
  if (format === 'json') {
    const alarms = result.alarms.map((alarm) => ({ memberID: oe(alarm.memberId), alarm: oe(ALARM_NUMBERS[alarm.alarm]) }));
    return `${goJson({ header: result.header === undefined ? undefined : headerJson(result.header), alarms: oe(alarms) })}\n`;
  }
  return result.alarms.map((alarm) => `${alarm.memberId === 0n ? '' : `memberID:${alarm.memberId} `}${alarm.alarm === 'NONE' ? '' : `alarm:${alarm.alarm} `}\n`).join('');
}

/** `defrag` output for one endpoint (the same line in every format, as etcdctl prints it). */
export function formatDefragmented(endpoint: string): string {
  return `Finished defragmenting etcd member[${endpoint}]\n`;
}

/** `endpoint hashkv` output. */
export function formatHashKv(hashes: ReadonlyArray<{ endpoint: string; hash: HashKvResult }>, format: OutputFormat): string {
  if (format === 'json') {
    const items = hashes.map(({ endpoint, hash }) => ({ Endpoint: endpoint, HashKV: { header: headerJson(hash.header), hash: oe(hash.hash), compact_revision: oe(hash.compactRevision) } }));
    return `${goJson(items)}\n`;
  }
  const rows = hashes.map(({ endpoint, hash }) => [endpoint, String(hash.hash)]);
  if (format === 'table') return table(['ENDPOINT', 'HASH'], rows);
  return rows.map((row) => `${row.join(', ')}\n`).join('');
}

/**
 * `endpoint health` output: `{ stdout, stderr }` (etcdctl prints the simple format to stderr).
 */
export function formatHealth(results: readonly HealthResult[], format: OutputFormat): { stdout: string; stderr: string } {
  if (format === 'json') {
    const items = results.map((result) => ({ endpoint: result.endpoint, health: result.health, took: goDuration(result.tookMs), error: oe(result.error ?? '') }));
    return { stdout: `${goJson(items)}\n`, stderr: '' };
  }
  if (format === 'table') {
    return { stdout: table(['ENDPOINT', 'HEALTH', 'TOOK', 'ERROR'], results.map((result) => [result.endpoint, String(result.health), goDuration(result.tookMs), result.error ?? ''])), stderr: '' };
  }
  const stderr = results
    .map((result) =>
      result.health
        ? `${result.endpoint} is healthy: successfully committed proposal: took = ${goDuration(result.tookMs)}\n`
        : `${result.endpoint} is unhealthy: failed to commit proposal: ${result.error ?? ''}\n`,
    )
    .join('');
  return { stdout: '', stderr };
}

/** A lease id as etcdctl prints it (`%016x`). */
export function leaseHex(id: bigint): string {
  return hexId(id).padStart(16, '0');
}

/** `lease grant` output. */
export function formatLeaseGrant(result: LeaseGrantResult, format: OutputFormat): string | undefined {
  if (format === 'json') return `${goJson({ ...headerFields(result.header), ID: result.id, TTL: result.ttl, Error: '' })}\n`;
  if (format === 'table') return undefined;
  return `lease ${leaseHex(result.id)} granted with TTL(${result.ttl}s)\n`;
}

/** `lease revoke` output. */
export function formatLeaseRevoke(id: bigint, result: { header: ResponseHeader }, format: OutputFormat): string | undefined {
  if (format === 'json') return `${goJson({ header: headerJson(result.header) })}\n`;
  if (format === 'table') return undefined;
  return `lease ${leaseHex(id)} revoked\n`;
}

/** `lease keep-alive` output (one response). */
export function formatLeaseKeepAlive(result: LeaseKeepAliveResult, format: OutputFormat): string | undefined {
  if (format === 'json') return `${goJson({ ...headerFields(result.header), ID: result.id, TTL: result.ttl })}\n`;
  if (format === 'table') return undefined;
  return `lease ${leaseHex(result.id)} keepalived with TTL(${result.ttl})\n`;
}

/** `lease timetolive` output. */
export function formatLeaseTimeToLive(result: LeaseTimeToLiveResult, format: OutputFormat, options: { keys: boolean }): string | undefined {
  if (format === 'json') {
    return `${goJson({ ...headerFields(result.header), id: result.id, ttl: result.ttl, 'granted-ttl': result.grantedTtl, keys: result.keys.length === 0 ? null : [...result.keys] })}\n`;
  }
  if (format === 'table') return undefined;
  if (result.grantedTtl === 0 && result.ttl === -1) return `lease ${leaseHex(result.id)} already expired\n`;
  let text = `lease ${leaseHex(result.id)} granted with TTL(${result.grantedTtl}s), remaining(${result.ttl}s)`;
  if (options.keys) text += `, attached keys([${result.keys.map((key) => key.toString('utf8')).join(' ')}])`;
  return `${text}\n`;
}

/** `lease list` output. */
export function formatLeaseList(result: { header: ResponseHeader; leases: readonly bigint[] }, format: OutputFormat): string | undefined {
  if (format === 'json') return `${goJson({ ...headerFields(result.header), leases: result.leases.map((id) => ({ id })) })}\n`;
  if (format === 'table') return undefined;
  return `found ${result.leases.length} leases\n${result.leases.map((id) => `${leaseHex(id)}\n`).join('')}`;
}

/** `compaction` output (etcdctl prints it the same way in every format). */
export function formatCompaction(revision: bigint): string {
  return `compacted revision ${revision}\n`;
}

/** Simple key/value lines, for `lock` and `elect` output. */
export function formatKeyValue(kv: { key: Buffer; value: Buffer }, options: SimpleOptions = {}): string {
  return `${bytesText(kv.key, options)}\n${bytesText(kv.value, options)}\n`;
}

// ---------------------------------------------------------------------------------------------
// snapshot and backup

/** `snapshot status` output, as etcdctl 3.4 prints it (hash in hex except in json). */
export function formatSnapshotStatus(status: { hash: number; revision: number; totalKey: number; totalSize: number }, format: OutputFormat): string {
  if (format === 'json') return `${goJson({ hash: status.hash, revision: status.revision, totalKey: status.totalKey, totalSize: status.totalSize })}\n`;
  const row = [status.hash.toString(16), String(status.revision), String(status.totalKey), humanizeBytes(BigInt(status.totalSize))];
  if (format === 'table') return table(['HASH', 'REVISION', 'TOTAL KEYS', 'TOTAL SIZE'], [row]);
  return `${row.join(', ')}\n`;
}

/** A download's progress line: bytes, share of the announced total, rate. */
export function formatTransferProgress(progress: { receivedBytes: number; totalBytes: number | undefined; elapsedMs: number }): string {
  const rate = progress.elapsedMs > 0 ? (progress.receivedBytes * 1000) / progress.elapsedMs : 0;
  const share = progress.totalBytes !== undefined && progress.totalBytes > 0 ? ` of ${humanizeBytes(BigInt(progress.totalBytes))} (${Math.min(100, Math.floor((progress.receivedBytes * 100) / progress.totalBytes))}%)` : '';
  return `${humanizeBytes(BigInt(progress.receivedBytes))}${share}, ${humanizeBytes(BigInt(Math.round(rate)))}/s`;
}
