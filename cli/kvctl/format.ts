/**
 * kvctl's output formats, byte-compatible with etcdctl 3.4: `simple` lines, `json` as Go's
 * encoding/json prints etcd's response structs (snake_case names, omitted zero values, 64-bit
 * numbers unquoted and exact, bytes as base64), and `table` as etcdctl's tablewriter layout.
 */
import { hexId, type KeyValue, type ResponseHeader, type RangeResult, type PutResult, type DeleteResult, type TxnResult, type OperationResult, type WatchEvent, type Member, type StatusResult, type HashKvResult, type HealthResult, type LeaseGrantResult, type LeaseKeepAliveResult, type LeaseTimeToLiveResult } from '../../src/client/index.js';

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

/** `member list` output. */
export function formatMemberList(result: { header: ResponseHeader; members: readonly Member[] }, format: OutputFormat): string {
  if (format === 'json') {
    const members = result.members.map((member) => ({ ID: oe(member.id), name: oe(member.name), peerURLs: oe([...member.peerUrls]), clientURLs: oe([...member.clientUrls]), isLearner: oe(member.isLearner) }));
    return `${goJson({ header: headerJson(result.header), members: oe(members) })}\n`;
  }
  const rows = result.members.map((member) => [hexId(member.id), member.name === '' ? 'unstarted' : 'started', member.name, member.peerUrls.join(','), member.clientUrls.join(','), String(member.isLearner)]);
  if (format === 'table') return table(['ID', 'STATUS', 'NAME', 'PEER ADDRS', 'CLIENT ADDRS', 'IS LEARNER'], rows);
  return rows.map((row) => `${row.join(', ')}\n`).join('');
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
