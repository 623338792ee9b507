/**
 * Shared plumbing of kvctl commands: global flags (etcdctl's names and defaults), the client
 * they configure, output writing, and etcdctl-style errors (`Error: <message>`, exit codes
 * ExitError=1, ExitInvalidInput=3, ExitBadFeature=4, ExitInterrupted=5, ExitBadArgs=128).
 */
import { readFileSync } from 'node:fs';
import { connect, type AuthOptions, type Client, type TlsOptions } from '../../src/client/index.js';
import type { OutputFormat } from './format.js';

/** etcdctl's exit codes. */
export const ExitCode = { error: 1, badConnection: 2, invalidInput: 3, badFeature: 4, interrupted: 5, badArgs: 128 } as const;

/** A failure to report as `Error: <message>` with an exit code. */
export class CliError extends Error {
  override name = 'CliError';
  readonly exitCode: number;
  constructor(message: string, exitCode: number = ExitCode.error) {
    super(message);
    this.exitCode = exitCode;
  }
}

/** Global flags as commander delivers them. */
export interface GlobalFlags {
  readonly endpoints: string;
  readonly dialTimeout: string;
  readonly commandTimeout: string;
  readonly writeOut: string;
  readonly hex?: boolean;
  readonly user?: string;
  readonly password?: string;
  readonly cacert?: string;
  readonly cert?: string;
  readonly key?: string;
  readonly insecureSkipTlsVerify?: boolean;
}

/** Parses a Go duration (`500ms`, `2s`, `1m30s`, `1.5h`) into milliseconds. */
export function parseDuration(text: string): number {
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const pattern = /([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)/g;
  let total = 0;
  let consumed = 0;
  for (const match of text.matchAll(pattern)) {
    total += Number(match[1]) * units[match[2]];
    consumed += match[0].length;
  }
  if (consumed !== text.length || consumed === 0) {
    if (/^[0-9]+$/.test(text)) return Number(text) / 1e6;
    throw new CliError(`invalid duration "${text}"`, ExitCode.badArgs);
  }
  return total;
}

/** Resolved global settings. */
export interface Settings {
  readonly endpoints: string[];
  readonly dialTimeoutMs: number;
  readonly commandTimeoutMs: number;
  readonly format: OutputFormat;
  readonly hex: boolean;
  readonly tls?: TlsOptions;
  readonly auth?: AuthOptions;
}

/** Validates the global flags. */
export function settingsFrom(flags: GlobalFlags): Settings {
  const format = flags.writeOut;
  if (format !== 'simple' && format !== 'json' && format !== 'table') throw new CliError(`${format} not supported as output format`, ExitCode.badFeature);
  return {
    endpoints: flags.endpoints.split(',').map((endpoint) => endpoint.trim()).filter((endpoint) => endpoint !== ''),
    dialTimeoutMs: parseDuration(flags.dialTimeout),
    commandTimeoutMs: parseDuration(flags.commandTimeout),
    format,
    hex: flags.hex === true,
    tls: tlsFrom(flags),
    auth: authFrom(flags),
  };
}

/** etcdctl's TLS flags: --cacert, --cert, --key (files), --insecure-skip-tls-verify. */
function tlsFrom(flags: GlobalFlags): TlsOptions | undefined {
  const read = (path: string | undefined, what: string): Buffer | undefined => {
    if (path === undefined || path === '') return undefined;
    try {
      return readFileSync(path);
    } catch (error: unknown) {
      throw new CliError(`open ${path}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : String(error)} (${what})`, ExitCode.badArgs);
    }
  };
  const ca = read(flags.cacert, '--cacert');
  const cert = read(flags.cert, '--cert');
  const key = read(flags.key, '--key');
  if ((cert === undefined) !== (key === undefined)) throw new CliError(cert === undefined ? 'cert file is required when key file is given' : 'key file is required when cert file is given', ExitCode.badArgs);
  const skip = flags.insecureSkipTlsVerify === true;
  if (ca === undefined && cert === undefined && !skip) return undefined;
  return { ca, cert, key, insecureSkipVerify: skip };
}

/** etcdctl's --user `name[:password]` and --password. */
function authFrom(flags: GlobalFlags): AuthOptions | undefined {
  const user = flags.user;
  if (user === undefined || user === '') return undefined;
  if (typeof flags.password === 'string' && flags.password !== '') {
    if (user.includes(':')) throw new CliError('Password must not be included in --user if --password is specified', ExitCode.badArgs);
    return { username: user, password: flags.password };
  }
  const colon = user.indexOf(':');
  if (colon < 0) throw new CliError('password is needed: use --user name:password or --password (kvctl does not prompt)', ExitCode.badArgs);
  return { username: user.slice(0, colon), password: user.slice(colon + 1) };
}

/** Opens a client for the settings (the caller closes it). */
export function clientFor(settings: Settings): Client {
  return connect({ endpoints: settings.endpoints, dialTimeout: settings.dialTimeoutMs, requestTimeout: settings.dialTimeoutMs + settings.commandTimeoutMs, tls: settings.tls, auth: settings.auth });
}

/** Writes text to stdout and waits for it to be flushed. */
export function out(text: string): Promise<void> {
  if (text === '') return Promise.resolve();
  return new Promise((resolve) => process.stdout.write(text, () => resolve()));
}

/** Writes text to stderr. */
export function err(text: string): Promise<void> {
  if (text === '') return Promise.resolve();
  return new Promise((resolve) => process.stderr.write(text, () => resolve()));
}

/** Writes a printer's output, or etcdctl's "not supported" error when it has none. */
export async function print(text: string | undefined, format: OutputFormat): Promise<void> {
  if (text === undefined) throw new CliError(`${format} not supported as output format`, ExitCode.badFeature);
  await out(text);
}

/** Parses a lease id as etcdctl does (hexadecimal). */
export function parseLeaseId(text: string, what: 'lease' | 'lease-arg' = 'lease'): bigint {
  if (!/^[0-9a-fA-F]{1,16}$/.test(text)) {
    throw new CliError(what === 'lease' ? `bad lease ID (strconv.ParseInt: parsing "${text}": invalid syntax), expecting ID in Hex` : `bad lease ID arg (strconv.ParseInt: parsing "${text}": invalid syntax), expecting ID in Hex`, ExitCode.badArgs);
  }
  return BigInt.asIntN(64, BigInt(`0x${text}`));
}

/** Parses a decimal int64 flag. */
export function parseInt64(text: string, flag: string): bigint {
  if (!/^[+-]?[0-9]+$/.test(text)) throw new CliError(`invalid argument "${text}" for "${flag}" flag: strconv.ParseInt: parsing "${text}": invalid syntax`, ExitCode.badArgs);
  return BigInt(text);
}

/** Reads all of stdin as text. */
export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Resolves on SIGINT or SIGTERM (once), for long-running commands. */
export function interrupted(): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolve();
    };
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
}
