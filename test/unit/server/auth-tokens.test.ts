// Goal: tokens are valid on any member holding the replicated key, expire as etcd's simple
// tokens (TTL after last use), die with a new key, and cannot be forged; JWTs carry etcd's
// claims; the credential cache runs the KDF once per credential version, even for concurrent
// logins. Method: providers with an injected clock and key; a counting verifier.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { JwtTokens, SimpleTokens, parseTokenSettings } from '../../../src/server/auth/tokens.js';
import { CredentialCache } from '../../../src/server/auth/credential-cache.js';
import { bcryptFromHashedPassword, hashPassword, verifyPassword } from '../../../src/server/auth/passwords.js';
import bcrypt from 'bcryptjs';

test('simple tokens verify on another member with the same key, slide with use, and die with the key', async () => {
  let now = 1_000_000;
  let key = new Uint8Array(32).fill(1);
  const issuer = new SimpleTokens({ tokenKey: () => key, ttlMs: 300_000, now: () => now });
  const other = new SimpleTokens({ tokenKey: () => key, ttlMs: 300_000, now: () => now });
  const token = await issuer.issue('alice', 7);
  assert.deepEqual(other.verify(token), { user: 'alice', revision: 7 });
  now += 200_000;
  assert.ok(issuer.verify(token) !== undefined);
  now += 200_000; // 400 s after issue, 200 s after its last use on the issuer
  assert.ok(issuer.verify(token) !== undefined, 'used 200 s ago: still valid where it was used');
  assert.equal(new SimpleTokens({ tokenKey: () => key, ttlMs: 300_000, now: () => now }).verify(token), undefined, 'a member that never saw it counts from the issue');
  const forged = token.replace(/^[^.]+/, Buffer.from('root').toString('base64url'));
  assert.equal(other.verify(forged), undefined);
  assert.equal(other.verify('garbage'), undefined);
  key = new Uint8Array(32).fill(2); // auth disabled and enabled again
  assert.equal(issuer.verify(token), undefined);
});

test('JWT tokens carry username, revision and exp (etcd claims) and verify with the public key', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvd-jwt-'));
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(join(dir, 'priv.pem'), privateKey.export({ type: 'pkcs1', format: 'pem' }));
  writeFileSync(join(dir, 'pub.pem'), publicKey.export({ type: 'spki', format: 'pem' }));
  const { settings, warnings } = parseTokenSettings(`jwt,pub-key=${join(dir, 'pub.pem')},priv-key=${join(dir, 'priv.pem')},sign-method=RS256,ttl=10m,foo=bar`, (text) => (text === '10m' ? 600_000 : Number.NaN));
  assert.deepEqual(warnings, ['unknown JWT option "foo"; ignored']);
  assert.equal(settings.kind, 'jwt');
  const signer = new JwtTokens(settings as Extract<typeof settings, { kind: 'jwt' }>);
  const token = await signer.issue('alice', 3);
  const claims = decodeJwt(token);
  assert.equal(claims.username, 'alice');
  assert.equal(claims.revision, 3);
  assert.ok(typeof claims.exp === 'number' && claims.exp * 1000 > Date.now() + 500_000);
  const verifier = new JwtTokens({ ...(settings as Extract<typeof settings, { kind: 'jwt' }>), privateKeyFile: undefined });
  assert.deepEqual(await verifier.verify(token), { user: 'alice', revision: 3 });
  assert.equal(await verifier.verify(`${token.slice(0, -4)}AAAA`), undefined);
  await assert.rejects(verifier.issue('alice', 3), /verify-only/);
  assert.throws(() => parseTokenSettings('jwt,sign-method=XX256', Number), /invalid auth signature method/);
  assert.throws(() => parseTokenSettings('magic', Number), /invalid auth options/);
});

test('the credential cache runs one KDF for concurrent logins and again after a password change', async () => {
  const cache = new CredentialCache();
  let runs = 0;
  const slow = (ok: boolean) => async () => {
    runs += 1;
    await new Promise((resolve) => setTimeout(resolve, 20));
    return ok;
  };
  const results = await Promise.all(Array.from({ length: 100 }, () => cache.check('alice', 2, 'pw', slow(true))));
  assert.ok(results.every((ok) => ok));
  assert.equal(runs, 1);
  assert.equal(await cache.check('alice', 2, 'pw', slow(true)), true);
  assert.equal(runs, 1, 'a hit pays nothing');
  assert.equal(await cache.check('alice', 2, 'wrong', slow(false)), false);
  assert.equal(await cache.check('alice', 2, 'wrong', slow(false)), false);
  assert.equal(runs, 3, 'failures are not cached');
  assert.equal(await cache.check('alice', 3, 'pw', slow(true)), true);
  assert.equal(runs, 4, 'a new credential revision verifies again');
});

test('scrypt hashes verify; bcrypt hashedPassword (etcd 3.5+) is accepted as base64 of the hash', async () => {
  const hash = await hashPassword('secret');
  assert.equal(hash.scheme, 'scrypt');
  assert.equal(JSON.stringify(hash).includes('secret'), false);
  assert.equal(await verifyPassword(hash, 'secret'), true);
  assert.equal(await verifyPassword(hash, 'Secret'), false);
  const bcryptHash = bcrypt.hashSync('pw', 4);
  const stored = bcryptFromHashedPassword(Buffer.from(bcryptHash).toString('base64'));
  assert.equal(await verifyPassword(stored, 'pw'), true);
  assert.equal(await verifyPassword(stored, 'px'), false);
  assert.throws(() => bcryptFromHashedPassword(Buffer.from('plain').toString('base64')), /invalid hashed password/);
});
