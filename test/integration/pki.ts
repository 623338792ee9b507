/**
 * A small PKI for TLS tests (no openssl needed): a CA, a server certificate for 127.0.0.1 and
 * localhost (also used as peer certificate), and client certificates whose CN is a user name.
 * Files: ca.crt/key, server.crt/key, peer-<name>.crt/key, <client>.crt/key in `dir`.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeCertificate, type CertificatePem } from '../../src/server/tls.js';

export interface TestPki {
  readonly dir: string;
  readonly ca: CertificatePem;
  /** Absolute path of a file of the PKI. */
  file(name: string): string;
  /** Makes (and writes) another certificate signed by the CA. */
  issue(name: string, options: { commonName: string; usage: 'server-and-client' | 'client'; hosts?: readonly string[]; validityMs?: number; notBefore?: Date }): Promise<CertificatePem>;
}

export async function makeTestPki(dir: string, options: { clients?: readonly string[]; peers?: readonly string[] } = {}): Promise<TestPki> {
  const ca = await makeCertificate({ commonName: 'kvd test CA', usage: 'ca', issuer: 'self' });
  await writeFile(join(dir, 'ca.crt'), ca.certPem);
  await writeFile(join(dir, 'ca.key'), ca.keyPem, { mode: 0o600 });
  const pki: TestPki = {
    dir,
    ca,
    file: (name) => join(dir, name),
    issue: async (name, issue) => {
      const made = await makeCertificate({ commonName: issue.commonName, usage: issue.usage, hosts: issue.hosts, issuer: ca, validityMs: issue.validityMs, notBefore: issue.notBefore });
      await writeFile(join(dir, `${name}.crt`), made.certPem);
      await writeFile(join(dir, `${name}.key`), made.keyPem, { mode: 0o600 });
      return made;
    },
  };
  await pki.issue('server', { commonName: 'server', usage: 'server-and-client', hosts: ['127.0.0.1', 'localhost'] });
  for (const peer of options.peers ?? []) await pki.issue(`peer-${peer}`, { commonName: peer, usage: 'server-and-client', hosts: ['127.0.0.1', 'localhost'] });
  for (const client of options.clients ?? []) await pki.issue(client, { commonName: client, usage: 'client' });
  return pki;
}
