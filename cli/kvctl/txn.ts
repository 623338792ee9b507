/**
 * Parser for etcdctl's txn input: compares, a blank line, success requests, a blank line,
 * failure requests, a blank line (or end of input). Compare lines read
 * `<target>("<key>") <op> "<value>"` with targets ver/version, c/create, m/mod, val/value,
 * lease; request lines are `get|put|del` commands with their flags, as in etcdctl.
 */
import { compare, op, type Compare, type CompareOperator, type Operation } from '../../src/client/index.js';

/** A parse failure; its message is etcdctl's. */
export class TxnParseError extends Error {
  override name = 'TxnParseError';
  /** etcdctl's exit code: ExitInvalidInput (3), or ExitBadArgs (128) for a request's argument count. */
  readonly exitCode: number;
  constructor(message: string, exitCode = 3) {
    super(message);
    this.exitCode = exitCode;
  }
}

/** Splits a line into arguments, honouring double-quoted strings with Go escapes. */
export function argify(line: string): string[] {
  const args: string[] = [];
  for (const match of line.matchAll(/"(?:[^"\\]|\\.)*"|\S+/g)) {
    const token = match[0];
    args.push(token.startsWith('"') ? unquote(token) : token);
  }
  return args;
}

function unquote(token: string): string {
  try {
    return JSON.parse(token) as string;
  } catch (error: unknown) {
    void error; // Not JSON-compatible escapes: strip the quotes only.
    return token.slice(1, -1);
  }
}

/** Parses one compare line. */
export function parseCompare(line: string): Compare {
  const paren = line.indexOf('(');
  if (paren < 0) throw new TxnParseError(`malformed comparison: ${line}`);
  const target = line.slice(0, paren);
  const match = /^\s*("(?:[^"\\]|\\.)*")\)\s+(\S+)\s+("(?:[^"\\]|\\.)*")\s*$/.exec(line.slice(paren + 1));
  if (match === null) throw new TxnParseError(`malformed comparison: ${line}`);
  const key = unquote(match[1]);
  const operator = match[2];
  const value = unquote(match[3]);
  if (!['=', '!=', '<', '>'].includes(operator)) throw new TxnParseError(`Unknown result op "${operator}"`);
  const cmpOp = operator as CompareOperator;
  const integer = (): bigint => {
    if (!/^[+-]?[0-9]+$/.test(value)) throw new TxnParseError(`invalid txn compare request: ${line}`);
    return BigInt(value);
  };
  switch (target.trim()) {
    case 'ver':
    case 'version':
      return compare.version(key, cmpOp, integer());
    case 'c':
    case 'create':
      return compare.createRevision(key, cmpOp, integer());
    case 'm':
    case 'mod':
      return compare.modRevision(key, cmpOp, integer());
    case 'val':
    case 'value':
      return compare.value(key, cmpOp, value);
    case 'lease':
      return compare.lease(key, cmpOp, integer());
    default:
      throw new TxnParseError(`malformed comparison: ${line} (unknown target ${target})`);
  }
}

/** Parses one request line (`get`, `put`, `del` with etcdctl's flags). */
export function parseRequest(line: string): Operation {
  const args = argify(line);
  const flags = new Set(args.filter((arg) => arg.startsWith('--')).map((arg) => arg.split('=')[0]));
  const valueOf = (name: string): string | undefined => {
    for (let index = 0; index < args.length; index += 1) {
      if (args[index] === name) return args[index + 1];
      if (args[index].startsWith(`${name}=`)) return args[index].slice(name.length + 1);
    }
    return undefined;
  };
  const valueFlags = new Set(['--lease', '--rev', '--limit', '--sort-by', '--order', '--consistency']);
  const positional: string[] = [];
  for (let index = 1; index < args.length; index += 1) {
    const arg = args[index];
    if (arg.startsWith('--')) {
      if (valueFlags.has(arg)) index += 1;
      continue;
    }
    positional.push(arg);
  }
  const invalid = (): never => {
    throw new TxnParseError(`invalid txn request: ${line}`);
  };
  switch (args[0]) {
    case 'put': {
      if (positional.length !== 2) throw new TxnParseError('put command needs 1 argument and input from stdin or 2 arguments', 128);
      const lease = valueOf('--lease');
      return op.put(positional[0], positional[1], { lease: lease === undefined ? undefined : BigInt(`0x${lease}`), prevKv: flags.has('--prev-kv'), ignoreValue: flags.has('--ignore-value'), ignoreLease: flags.has('--ignore-lease') });
    }
    case 'get': {
      if (positional.length < 1 || positional.length > 2) throw new TxnParseError('get command needs one argument as key and an optional argument as range_end', 128);
      const rev = valueOf('--rev');
      const limit = valueOf('--limit');
      return op.get(positional[0], {
        rangeEnd: positional[1],
        prefix: flags.has('--prefix'),
        fromKey: flags.has('--from-key'),
        revision: rev === undefined ? undefined : BigInt(rev),
        limit: limit === undefined ? undefined : Number(limit),
        keysOnly: flags.has('--keys-only'),
        countOnly: flags.has('--count-only'),
      });
    }
    case 'del':
    case 'delete': {
      if (positional.length < 1 || positional.length > 2) throw new TxnParseError('del command needs one argument as key and an optional argument as range_end', 128);
      return op.delete(positional[0], { rangeEnd: positional[1], prefix: flags.has('--prefix'), fromKey: flags.has('--from-key'), prevKv: flags.has('--prev-kv') });
    }
    default:
      return invalid();
  }
}

/** A parsed transaction. */
export interface ParsedTxn {
  readonly compares: Compare[];
  readonly success: Operation[];
  readonly failure: Operation[];
}

/** Parses the three blank-line-separated sections of etcdctl txn input. */
export function parseTxn(lines: readonly string[]): ParsedTxn {
  const parsed: ParsedTxn = { compares: [], success: [], failure: [] };
  let section = 0;
  for (const raw of lines) {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '') {
      section += 1;
      if (section > 2) break;
      continue;
    }
    if (section === 0) parsed.compares.push(parseCompare(line));
    else if (section === 1) parsed.success.push(parseRequest(line));
    else parsed.failure.push(parseRequest(line));
  }
  return parsed;
}
