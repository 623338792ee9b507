/**
 * TLS for the client and peer ports, with etcd's flags and behaviour (etcd's pkg/transport
 * listener.go and embed/config.go):
 *
 * - `--cert-file`/`--key-file` (`--peer-*`) serve TLS; `--trusted-ca-file` verifies client
 *   certificates and, as etcd, makes them required: etcd requires and verifies a client
 *   certificate when a trusted CA is given or `--client-cert-auth` is set.
 * - `--auto-tls` (`--peer-auto-tls`) without certificate files: a self-signed certificate is made
 *   in `<data-dir>/fixtures/client` (`peer`), and peers do not verify each other (encryption only,
 *   as etcd's self-signed mode).
 * - `--peer-cert-allowed-cn`: a peer's verified certificate must carry this common name.
 * - TLS 1.2 at least; `--cipher-suites` takes Go's suite names (TLS 1.2 suites; naming any keeps
 *   connections on TLS 1.2, whose suites are the only configurable ones).
 * - Certificates, keys and the CA are re-read when their files change (fs.watch on their
 *   directories, and a periodic check for file systems that do not report changes): new
 *   connections get the new material, open ones keep theirs. A file that does not load (half
 *   written, mismatched key) is logged and the previous material stays in use.
 * - A refused connection is logged as etcd logs it: `rejected connection from "ADDR" (error
 *   "tls: client didn't provide a certificate", ServerName "")`, rate limited.
 *
 * The listeners only see {@link SecureAccept}: a function from an accepted TCP socket to the
 * socket to serve on (or undefined when refused), so the api and transport layers stay free of
 * TLS policy. ALPN offers h2 (gRPC) and, on the client port, http/1.1 (the JSON gateway).
 */
import { watch, type FSWatcher } from 'node:fs';
import { mkdir, readFile, stat, writeFile, rename } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import * as tls from 'node:tls';
import type * as net from 'node:net';
import { X509Certificate, generateKeyPair, randomBytes } from 'node:crypto';
import forge from 'node-forge';
import { errorMessage } from '../util/errors.js';
import type { Logger } from './logger.js';

/** One port's TLS settings, as the flags (or a config file's transport-security section) give them. */
export interface TlsSettings {
  readonly certFile?: string;
  readonly keyFile?: string;
  readonly trustedCaFile?: string;
  /** --client-cert-auth / --peer-client-cert-auth. */
  readonly clientCertAuth: boolean;
  /** --auto-tls / --peer-auto-tls (used only without cert and key files, as etcd). */
  readonly autoTls: boolean;
  /** --peer-cert-allowed-cn (peer port only). */
  readonly allowedCn?: string;
  /** --cipher-suites, Go names. */
  readonly cipherSuites?: readonly string[];
}

/** Accepts a TCP connection: resolves with the socket to serve on, or undefined (refused, already closed). */
export type SecureAccept = (socket: net.Socket) => Promise<net.Socket | undefined>;

/** ALPN of the client port: gRPC over HTTP/2 first, then HTTP/1.1 for the JSON gateway and /health. */
export const CLIENT_ALPN: readonly string[] = ['h2', 'http/1.1'];
/** ALPN of the peer port (gRPC only). */
export const PEER_ALPN: readonly string[] = ['h2'];

/** A handshake not finished within this time is dropped. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
/** How often the files are checked even without a change notification. */
export const RELOAD_CHECK_INTERVAL_MS = 5_000;
/** Refusals logged per second at most; the rest are counted and reported with the next line. */
const REFUSALS_LOGGED_PER_SECOND = 10;
/** Validity of auto-TLS certificates (etcd 3.4: one year). */
const AUTO_TLS_VALIDITY_MS = 365 * 24 * 3600 * 1000;

/** Go's TLS 1.2 cipher suite names (what etcd's --cipher-suites takes) → OpenSSL's. */
const GO_CIPHER_SUITES: Readonly<Record<string, string>> = {
  TLS_RSA_WITH_AES_128_CBC_SHA: 'AES128-SHA',
  TLS_RSA_WITH_AES_256_CBC_SHA: 'AES256-SHA',
  TLS_RSA_WITH_AES_128_CBC_SHA256: 'AES128-SHA256',
  TLS_RSA_WITH_AES_128_GCM_SHA256: 'AES128-GCM-SHA256',
  TLS_RSA_WITH_AES_256_GCM_SHA384: 'AES256-GCM-SHA384',
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA: 'ECDHE-ECDSA-AES128-SHA',
  TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA: 'ECDHE-ECDSA-AES256-SHA',
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA: 'ECDHE-RSA-AES128-SHA',
  TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA: 'ECDHE-RSA-AES256-SHA',
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256: 'ECDHE-ECDSA-AES128-SHA256',
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256: 'ECDHE-RSA-AES128-SHA256',
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: 'ECDHE-RSA-AES128-GCM-SHA256',
  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: 'ECDHE-ECDSA-AES128-GCM-SHA256',
  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384: 'ECDHE-RSA-AES256-GCM-SHA384',
  TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: 'ECDHE-ECDSA-AES256-GCM-SHA384',
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305: 'ECDHE-RSA-CHACHA20-POLY1305',
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305: 'ECDHE-ECDSA-CHACHA20-POLY1305',
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256: 'ECDHE-RSA-CHACHA20-POLY1305',
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: 'ECDHE-ECDSA-CHACHA20-POLY1305',
};

/** OpenSSL's cipher list for Go suite names; throws etcd's error for an unknown name. */
export function opensslCiphers(goNames: readonly string[]): string {
  return goNames.map((name) => {
    const openssl = GO_CIPHER_SUITES[name];
    if (openssl === undefined) throw new Error(`unexpected TLS cipher suite "${name}"`);
    return openssl;
  }).join(':');
}

/** Whether settings ask for TLS at all (certificate files or auto TLS). */
export function tlsWanted(settings: TlsSettings | undefined): settings is TlsSettings {
  return settings !== undefined && ((settings.certFile !== undefined && settings.keyFile !== undefined) || settings.autoTls);
}

/** Validates one port's settings as etcd does at start-up; returns the problem or undefined. */
export function tlsSettingsProblem(settings: TlsSettings, scope: 'client' | 'peer'): string | undefined {
  const prefix = scope === 'peer' ? '--peer-' : '--';
  if ((settings.certFile === undefined) !== (settings.keyFile === undefined)) return `${prefix}cert-file and ${prefix}key-file must both be given`;
  if (settings.cipherSuites !== undefined) {
    try {
      opensslCiphers(settings.cipherSuites);
    } catch (error: unknown) {
      return errorMessage(error);
    }
  }
  return undefined;
}

/** The files' identity, to notice a change without reading them. */
async function fingerprint(paths: readonly string[]): Promise<string> {
  const parts = await Promise.all(paths.map(async (path) => {
    try {
      const info = await stat(path);
      return `${info.ino}:${info.size}:${info.mtimeMs}`;
    } catch (error: unknown) {
      return `missing:${errorMessage(error)}`;
    }
  }));
  return parts.join('|');
}

interface Material {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer | undefined;
  /** What tls.createSecureContext (and tls.Server's setSecureContext) take. */
  readonly options: tls.SecureContextOptions;
  readonly server: tls.SecureContext;
  readonly client: tls.SecureContext;
  /** Subject of the certificate (for logs). */
  readonly subject: string;
  readonly validTo: string;
}

/**
 * The certificate, key and CA of one port, reloaded when their files change. Call
 * {@link close} to stop watching.
 */
export class TlsMaterial {
  readonly #settings: TlsSettings;
  readonly #scope: 'client' | 'peer';
  readonly #logger: Logger;
  readonly #files: { cert: string; key: string; ca: string | undefined };
  readonly #selfSigned: boolean;
  readonly #ciphers: string | undefined;
  #material: Material;
  #fingerprint: string;
  readonly #watchers: FSWatcher[] = [];
  #timer: NodeJS.Timeout | undefined;
  #pending: NodeJS.Timeout | undefined;
  #reloading = false;
  #closed = false;
  /** Listeners told after each successful reload (peer clients rebuild their credentials). */
  readonly #listeners = new Set<() => void>();

  private constructor(options: { settings: TlsSettings; scope: 'client' | 'peer'; logger: Logger; files: { cert: string; key: string; ca: string | undefined }; selfSigned: boolean; material: Material; fingerprint: string }) {
    this.#settings = options.settings;
    this.#scope = options.scope;
    this.#logger = options.logger;
    this.#files = options.files;
    this.#selfSigned = options.selfSigned;
    this.#ciphers = options.settings.cipherSuites === undefined ? undefined : opensslCiphers(options.settings.cipherSuites);
    this.#material = options.material;
    this.#fingerprint = options.fingerprint;
  }

  /**
   * Loads the port's material (making the auto-TLS certificate first when asked) and starts
   * watching its files. `hosts` are the names and addresses an auto-TLS certificate covers.
   */
  static async open(settings: TlsSettings, options: { scope: 'client' | 'peer'; dataDir: string; hosts: readonly string[]; logger: Logger }): Promise<TlsMaterial> {
    let files: { cert: string; key: string; ca: string | undefined };
    let selfSigned = false;
    if (settings.certFile !== undefined && settings.keyFile !== undefined) {
      files = { cert: settings.certFile, key: settings.keyFile, ca: settings.trustedCaFile };
    } else if (settings.autoTls) {
      const dir = join(options.dataDir, 'fixtures', options.scope);
      files = { ...(await selfSignedCertificate(dir, options.hosts)), ca: undefined };
      selfSigned = true;
      options.logger.info({ event: 'auto-tls', scope: options.scope, cert: files.cert }, `made a self-signed ${options.scope} certificate (auto TLS)`);
    } else {
      throw new Error(`${options.scope === 'peer' ? '--peer-' : '--'}cert-file and key-file (or auto TLS) are needed for https URLs`);
    }
    const ciphers = settings.cipherSuites === undefined ? undefined : opensslCiphers(settings.cipherSuites);
    const paths = [files.cert, files.key, ...(files.ca === undefined ? [] : [files.ca])];
    const print = await fingerprint(paths);
    const material = await loadMaterial(files, ciphers);
    const opened = new TlsMaterial({ settings, scope: options.scope, logger: options.logger, files, selfSigned, material, fingerprint: print });
    opened.#watch(paths);
    options.logger.info({ event: 'tls-loaded', scope: options.scope, subject: material.subject, validTo: material.validTo, clientCertAuth: opened.requiresClientCertificates }, `${options.scope} TLS certificate loaded`);
    return opened;
  }

  /**
   * The settings other processes (front-ends) load the same material with: the files in use
   * (auto TLS's generated ones included).
   */
  get resolvedSettings(): TlsSettings {
    return { ...this.#settings, certFile: this.#files.cert, keyFile: this.#files.key, trustedCaFile: this.#files.ca, autoTls: false };
  }

  /** etcd: a client certificate is required and verified when a trusted CA is given or client-cert-auth is on. */
  get requiresClientCertificates(): boolean {
    return this.#settings.trustedCaFile !== undefined || this.#settings.clientCertAuth;
  }

  /** Whether outbound connections verify the peer's certificate (not in auto-TLS mode). */
  get verifiesServers(): boolean {
    return !this.#selfSigned;
  }

  /** The context new server-side connections use. */
  get serverContext(): tls.SecureContext {
    return this.#material.server;
  }

  /** The current material as secure-context options (for tls.Server#setSecureContext). */
  get contextOptions(): tls.SecureContextOptions {
    return this.#material.options;
  }

  /** The context new outbound connections use (our certificate as client certificate, the CA to verify). */
  get clientContext(): tls.SecureContext {
    return this.#material.client;
  }

  /** Calls `listener` after each reload; returns an unsubscribe. */
  onReload(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #watch(paths: readonly string[]): void {
    const names = new Map<string, Set<string>>();
    for (const path of paths) {
      const dir = dirname(path);
      const set = names.get(dir) ?? new Set<string>();
      set.add(basename(path));
      names.set(dir, set);
    }
    for (const [dir, files] of names) {
      try {
        const watcher = watch(dir, { persistent: false }, (_event, name) => {
          if (name === null || files.has(String(name)) || String(name).startsWith('..')) this.#schedule();
        });
        watcher.on('error', (error: unknown) => this.#logger.warn({ event: 'tls-watch-failed', dir, error: errorMessage(error) }, 'cannot watch certificate files; relying on the periodic check'));
        this.#watchers.push(watcher);
      } catch (error: unknown) {
        this.#logger.warn({ event: 'tls-watch-failed', dir, error: errorMessage(error) }, 'cannot watch certificate files; relying on the periodic check');
      }
    }
    this.#timer = setInterval(() => this.#schedule(), RELOAD_CHECK_INTERVAL_MS);
    this.#timer.unref();
  }

  /** Debounced reload check: a certificate swap writes several files in a row. */
  #schedule(): void {
    if (this.#closed || this.#pending !== undefined) return;
    this.#pending = setTimeout(() => {
      this.#pending = undefined;
      void this.#reloadIfChanged(); // Detached: it reports its own failures through the log.
    }, 100);
    this.#pending.unref();
  }

  async #reloadIfChanged(): Promise<void> {
    if (this.#reloading || this.#closed) return;
    this.#reloading = true;
    try {
      const paths = [this.#files.cert, this.#files.key, ...(this.#files.ca === undefined ? [] : [this.#files.ca])];
      const print = await fingerprint(paths);
      if (print === this.#fingerprint) return;
      try {
        const material = await loadMaterial(this.#files, this.#ciphers);
        this.#material = material;
        this.#fingerprint = print;
        this.#logger.info({ event: 'tls-reloaded', scope: this.#scope, subject: material.subject, validTo: material.validTo }, `${this.#scope} TLS certificate reloaded`);
        for (const listener of this.#listeners) listener();
      } catch (error: unknown) {
        // Keep serving with the previous material; a later change (the rest of the swap) retries.
        this.#logger.warn({ event: 'tls-reload-failed', scope: this.#scope, error: errorMessage(error) }, `${this.#scope} TLS certificate files changed but do not load; keeping the previous ones`);
      }
    } finally {
      this.#reloading = false;
    }
  }

  /** Checks the files now (tests; the watcher and timer do it by themselves). */
  reloadNow(): Promise<void> {
    return this.#reloadIfChanged();
  }

  close(): void {
    this.#closed = true;
    for (const watcher of this.#watchers) watcher.close();
    if (this.#timer !== undefined) clearInterval(this.#timer);
    if (this.#pending !== undefined) clearTimeout(this.#pending);
    this.#listeners.clear();
  }
}

async function loadMaterial(files: { cert: string; key: string; ca: string | undefined }, ciphers: string | undefined): Promise<Material> {
  const [cert, key, ca] = await Promise.all([readFile(files.cert), readFile(files.key), files.ca === undefined ? undefined : readFile(files.ca)]);
  const parsed = new X509Certificate(cert);
  const base: tls.SecureContextOptions = { cert, key, minVersion: 'TLSv1.2', ...(ciphers === undefined ? {} : { ciphers }) };
  // createSecureContext checks that the key matches the certificate (throws otherwise).
  const server = tls.createSecureContext({ ...base, ...(ca === undefined ? {} : { ca }) });
  const client = tls.createSecureContext({ ...base, ...(ca === undefined ? {} : { ca }) });
  return { cert, key, ca, options: { ...base, ...(ca === undefined ? {} : { ca }) }, server, client, subject: parsed.subject.replace(/\n/g, ', '), validTo: parsed.validTo };
}

/**
 * Makes (or reuses) the self-signed certificate of auto TLS in `dir`: RSA 2048, valid one
 * year, for `hosts` (names and IP addresses), usable as server and client certificate.
 */
export async function selfSignedCertificate(dir: string, hosts: readonly string[]): Promise<{ cert: string; key: string }> {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  try {
    const existing = new X509Certificate(await readFile(cert));
    await stat(key);
    if (Date.parse(existing.validTo) > Date.now() + 24 * 3600 * 1000) return { cert, key };
  } catch (error: unknown) {
    void error; // no usable certificate yet: make one
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const made = await makeCertificate({ commonName: '', organization: 'etcd', hosts, usage: 'server-and-client', issuer: 'self' });
  await writeFile(`${key}.tmp`, made.keyPem, { mode: 0o600 });
  await writeFile(`${cert}.tmp`, made.certPem, { mode: 0o644 });
  await rename(`${key}.tmp`, key);
  await rename(`${cert}.tmp`, cert);
  return { cert, key };
}

/** A certificate and key in PEM. */
export interface CertificatePem {
  readonly certPem: string;
  readonly keyPem: string;
}

/** An issuer for {@link makeCertificate}: 'self' signs with the new key. */
export type CertificateIssuer = 'self' | { readonly certPem: string; readonly keyPem: string };

/**
 * Makes an RSA 2048 / SHA-256 certificate (key pair from node:crypto, certificate built and
 * signed with node-forge): a CA (`usage: 'ca'`), or a leaf for servers and clients with `hosts`
 * as subject alternative names (IP addresses as IP entries). Used by auto TLS and by tests and
 * tools that need a small PKI.
 */
export async function makeCertificate(options: {
  readonly commonName: string;
  readonly organization?: string;
  readonly hosts?: readonly string[];
  readonly usage: 'ca' | 'server-and-client' | 'client';
  readonly issuer: CertificateIssuer;
  readonly validityMs?: number;
  readonly notBefore?: Date;
}): Promise<CertificatePem> {
  const pair = await new Promise<{ publicKey: string; privateKey: string }>((resolve, reject) => {
    generateKeyPair('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } }, (error, publicKey, privateKey) => (error !== null ? reject(error) : resolve({ publicKey, privateKey })));
  });
  const certificate = forge.pki.createCertificate();
  certificate.publicKey = forge.pki.publicKeyFromPem(pair.publicKey);
  certificate.serialNumber = `01${randomBytes(15).toString('hex')}`;
  const notBefore = options.notBefore ?? new Date(Date.now() - 60_000);
  certificate.validity.notBefore = notBefore;
  certificate.validity.notAfter = new Date(notBefore.getTime() + (options.validityMs ?? AUTO_TLS_VALIDITY_MS));
  const subject: forge.pki.CertificateField[] = [];
  if (options.organization !== undefined) subject.push({ name: 'organizationName', value: options.organization });
  if (options.commonName !== '') subject.push({ name: 'commonName', value: options.commonName });
  if (subject.length === 0) subject.push({ name: 'organizationName', value: 'kvd' });
  certificate.setSubject(subject);
  const issuerCert = options.issuer === 'self' ? undefined : forge.pki.certificateFromPem(options.issuer.certPem);
  certificate.setIssuer(issuerCert === undefined ? subject : issuerCert.subject.attributes);
  const extensions: Record<string, unknown>[] = [];
  if (options.usage === 'ca') {
    extensions.push({ name: 'basicConstraints', cA: true, critical: true });
    extensions.push({ name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true });
  } else {
    extensions.push({ name: 'basicConstraints', cA: false, critical: true });
    extensions.push({ name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true });
    extensions.push({ name: 'extKeyUsage', serverAuth: options.usage !== 'client', clientAuth: true });
    const hosts = options.hosts ?? [];
    if (hosts.length > 0) extensions.push({ name: 'subjectAltName', altNames: hosts.map((host) => (isIpAddress(host) ? { type: 7, ip: host } : { type: 2, value: host })) });
  }
  extensions.push({ name: 'subjectKeyIdentifier' });
  if (issuerCert !== undefined) extensions.push({ name: 'authorityKeyIdentifier', keyIdentifier: issuerCert.generateSubjectKeyIdentifier().getBytes() });
  certificate.setExtensions(extensions);
  const signingKey = forge.pki.privateKeyFromPem(options.issuer === 'self' ? pair.privateKey : options.issuer.keyPem);
  certificate.sign(signingKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(certificate), keyPem: pair.privateKey };
}

function isIpAddress(host: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(host) || host.includes(':');
}

/** The hosts of URLs (for an auto-TLS certificate's names): brackets of IPv6 literals removed, duplicates dropped. */
export function hostsOf(urls: readonly string[]): string[] {
  const hosts = new Set<string>();
  for (const url of urls) {
    try {
      const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
      if (host !== '' && host !== '0.0.0.0' && host !== '::') hosts.add(host);
    } catch (error: unknown) {
      void error; // not a URL: nothing to cover
    }
  }
  if (hosts.size === 0) hosts.add('localhost');
  return [...hosts];
}

/** Go's wording of a refused handshake, for the log line etcd writes. */
export function refusalText(error: unknown): string {
  const code = (error as { code?: string } | null)?.code ?? '';
  const message = errorMessage(error);
  if (code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE' || /peer did not return a certificate/i.test(message)) return "tls: client didn't provide a certificate";
  if (/certificate verify failed|unable to get local issuer|self.signed certificate|unknown ca|UNABLE_TO_VERIFY_LEAF_SIGNATURE|DEPTH_ZERO_SELF_SIGNED/i.test(`${code} ${message}`)) return "tls: failed to verify client's certificate: x509: certificate signed by unknown authority";
  if (/certificate has expired|CERT_HAS_EXPIRED/i.test(`${code} ${message}`)) return "tls: failed to verify client's certificate: x509: certificate has expired or is not yet valid";
  if (/wrong version number|http request|unknown protocol|packet length too long|WRONG_VERSION_NUMBER|HTTP_REQUEST/i.test(`${code} ${message}`)) return 'tls: first record does not look like a TLS handshake';
  if (/no application protocol|NO_APPLICATION_PROTOCOL/i.test(`${code} ${message}`)) return 'tls: client requested unsupported application protocols';
  if (/no shared cipher|NO_SHARED_CIPHER/i.test(`${code} ${message}`)) return 'tls: no cipher suite supported by both client and server';
  if (/unsupported protocol|UNSUPPORTED_PROTOCOL|version too low/i.test(`${code} ${message}`)) return 'tls: client offered only unsupported versions';
  return message === '' ? code : message;
}

/** Options of {@link secureAccept}. */
export interface SecureAcceptOptions {
  readonly material: TlsMaterial;
  /** ALPN protocols offered, in preference order (h2 first). */
  readonly alpn: readonly string[];
  /** --peer-cert-allowed-cn: the verified certificate's CN must be this. */
  readonly allowedCn?: string;
  readonly logger: Logger;
  readonly scope: 'client' | 'peer';
  /** Called once per refused connection (metrics, tests). */
  readonly onRefused?: (reason: string) => void;
}

/**
 * The TLS handshake of accepted connections (see {@link SecureAccept}), by a (never listening)
 * tls.Server per port that the raw sockets are handed to: the port's current material, client
 * certificates required and verified when the port asks for them (a missing one fails the
 * handshake with TLS's certificate-required alert), the allowed CN checked, a deadline on the
 * handshake. Refusals are logged as etcd logs them, at most {@link REFUSALS_LOGGED_PER_SECOND}
 * per second. A reloaded certificate applies to the next handshake (setSecureContext).
 */
export function secureAccept(options: SecureAcceptOptions): SecureAccept {
  let windowStartMs = 0;
  let loggedInWindow = 0;
  let suppressed = 0;
  const refuse = (remote: string, serverName: string, reason: string): void => {
    options.onRefused?.(reason);
    const now = Date.now();
    if (now - windowStartMs >= 1000) {
      windowStartMs = now;
      loggedInWindow = 0;
    }
    if (loggedInWindow >= REFUSALS_LOGGED_PER_SECOND) {
      suppressed += 1;
      return;
    }
    loggedInWindow += 1;
    const fields = { event: 'rejected-connection', scope: options.scope, 'remote-addr': remote, 'server-name': serverName, error: reason, ...(suppressed > 0 ? { suppressed } : {}) };
    suppressed = 0;
    options.logger.warn(fields, `rejected connection from "${remote}" (error "${reason}", ServerName "${serverName}")`);
  };
  const material = options.material;
  const requireCertificate = material.requiresClientCertificates;
  const server = tls.createServer({
    ...material.contextOptions,
    requestCert: requireCertificate,
    rejectUnauthorized: requireCertificate,
    ALPNCallback: ({ protocols }) => chooseAlpn(options.alpn, protocols),
    handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
  });
  material.onReload(() => server.setSecureContext(material.contextOptions));
  /**
   * Raw sockets waiting for their handshake; settled exactly once. A refused connection is
   * closed through its TLS socket, on the next turn of the event loop: destroying the raw socket
   * under a live TLS socket from inside the TLS server's own callbacks crashed Node 20 natively
   * (SIGSEGV in the TLS wrap), found by the TLS integration test.
   */
  const pending = new WeakMap<net.Socket, (secure: tls.TLSSocket | undefined) => void>();
  const closeLater = (secure: tls.TLSSocket): void => {
    setImmediate(() => secure.destroy());
  };
  const rawOf = (secure: tls.TLSSocket): net.Socket | undefined => (secure as unknown as { _parent?: net.Socket })._parent;
  server.on('secureConnection', (secure: tls.TLSSocket) => {
    const raw = rawOf(secure);
    const settle = raw === undefined ? undefined : pending.get(raw);
    if (settle === undefined) {
      closeLater(secure);
      return;
    }
    if (options.allowedCn !== undefined) {
      const commonName = (secure.getPeerCertificate().subject as Record<string, unknown> | undefined)?.CN;
      if (commonName !== options.allowedCn) {
        refuse(`${raw?.remoteAddress ?? '?'}:${raw?.remotePort ?? 0}`, serverNameOf(secure), `client certificate authentication failed (CN "${String(commonName ?? '')}" is not the allowed CN "${options.allowedCn}")`);
        settle(undefined);
        closeLater(secure);
        return;
      }
    }
    settle(secure);
  });
  server.on('tlsClientError', (error: Error, secure: tls.TLSSocket) => {
    const raw = rawOf(secure);
    const reason = secure.authorizationError !== null && secure.authorizationError !== undefined ? refusalText({ code: String(secure.authorizationError), message: String(secure.authorizationError) }) : refusalText(error);
    refuse(`${raw?.remoteAddress ?? '?'}:${raw?.remotePort ?? 0}`, serverNameOf(secure), reason);
    if (raw !== undefined) pending.get(raw)?.(undefined);
    closeLater(secure);
  });
  return (socket) => new Promise<net.Socket | undefined>((resolve) => {
    let settled = false;
    const settle = (secure: tls.TLSSocket | undefined): void => {
      if (settled) return;
      settled = true;
      pending.delete(socket);
      // A refused socket is closed by its TLS socket (closeLater), never from under it.
      resolve(secure);
    };
    pending.set(socket, settle);
    socket.once('close', () => settle(undefined));
    server.emit('connection', socket);
  });
}

/**
 * The protocol for a client's ALPN offer. gRPC clients (Go, grpc-js) offer only h2; a client that
 * also offers http/1.1 (curl, browsers) gets HTTP/1.1 on the client port, where the JSON gateway
 * and /health live (grpc-js would answer its HTTP/2 requests 415). No overlap: no protocol (the
 * connection is then sniffed).
 */
export function chooseAlpn(offered: readonly string[], wanted: readonly string[]): string | undefined {
  if (offered.includes('http/1.1') && wanted.includes('http/1.1')) return 'http/1.1';
  return offered.find((protocol) => wanted.includes(protocol));
}

function serverNameOf(secure: tls.TLSSocket): string {
  const name = (secure as { servername?: string | false }).servername;
  return typeof name === 'string' ? name : '';
}
