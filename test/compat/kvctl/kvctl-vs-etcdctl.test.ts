// Goal: kvctl prints exactly what etcdctl 3.4 prints (simple, json and table formats, error
// lines and exit codes) for the same commands on the same server. Method: run
// `node <dist>/bin/kvctl.js ...` (the bundle npm installs as the kvctl bin) and the real `etcdctl ...` against the server under test,
// resetting the keys a write touches before each of the two runs, and compare stdout, stderr's
// `Error:` lines and exit codes after normalising only what must differ between two runs
// (revisions, raft indexes, lease ids, remaining TTLs, timings).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { connect, type Client } from '../../../src/client/index.js';
import { serverUnavailable, startServerUnderTest, type ServerUnderTest } from '../client/server-under-test.js';
import { waitFor } from '../client/helpers.js';

const KVCTL = fileURLToPath(new URL('../../../bin/kvctl.js', import.meta.url));
const ETCDCTL = process.env.ETCDCTL_BINARY ?? '/usr/bin/etcdctl';
const skip = serverUnavailable !== false ? serverUnavailable : existsSync(ETCDCTL) ? false : 'etcdctl is not installed';

interface Run {
  stdout: string;
  /** stderr without etcdctl's JSON log lines. */
  errors: string;
  code: number | null;
}

function runTool(tool: 'kvctl' | 'etcdctl', endpoints: string[], args: string[], input?: string): Run {
  const command = tool === 'kvctl' ? process.execPath : ETCDCTL;
  const argv = tool === 'kvctl' ? [KVCTL, '--endpoints', endpoints.join(','), ...args] : ['--endpoints', endpoints.join(','), ...args];
  const result = spawnSync(command, argv, { input: input ?? '', encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' }, timeout: 15_000 });
  const errors = result.stderr
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('{"level"'))
    .join('\n');
  return { stdout: result.stdout, errors, code: result.status };
}

/** Like {@link runTool}, without blocking (for read-only commands run side by side). */
function runToolAsync(tool: 'kvctl' | 'etcdctl', endpoints: string[], args: string[]): Promise<Run> {
  const command = tool === 'kvctl' ? process.execPath : ETCDCTL;
  const argv = tool === 'kvctl' ? [KVCTL, '--endpoints', endpoints.join(','), ...args] : ['--endpoints', endpoints.join(','), ...args];
  return new Promise((resolve) => {
    const child = spawn(command, argv, { env: { ...process.env, ETCDCTL_API: '3' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (code) => {
      const errors = stderr
        .split('\n')
        .filter((line) => line !== '' && !line.startsWith('{"level"'))
        .join('\n');
      resolve({ stdout, errors, code });
    });
  });
}

/** Replaces values that legitimately differ between two runs. */
function normalise(text: string): string {
  return text
    .replace(/"(revision|create_revision|mod_revision|raft_term|raftIndex|raftAppliedIndex|dbSize|dbSizeInUse|ID|id|ttl|TTL)":-?\d+/g, '"$1":N')
    .replace(/"took":"[^"]*"/g, '"took":"T"')
    .replace(/lease [0-9a-f]{16}/g, 'lease L')
    .replace(/remaining\(\d+s\)/g, 'remaining(Rs)')
    .replace(/^[0-9a-f]{16}$/gm, 'L');
}

describe('kvctl matches etcdctl', { skip }, () => {
  let server: ServerUnderTest;
  let client: Client;
  before(async () => {
    server = await startServerUnderTest();
    client = connect({ endpoints: server.endpoints });
    for (const [key, value] of [['a', '1'], ['b', '2'], ['b1', '21'], ['c', 'three'], ['bin', '\u00e9t\u00e9']]) await client.put(key, value);
    await client.put('b', '22');
  });
  after(async () => {
    client?.close();
    await server?.stop();
  });

  /** Runs both tools, resetting state first, and compares normalised outputs. */
  async function same(args: string[], options: { setup?: () => Promise<void>; input?: string; exact?: boolean } = {}): Promise<Run> {
    await options.setup?.();
    const ours = runTool('kvctl', server.endpoints, args, options.input);
    await options.setup?.();
    const theirs = runTool('etcdctl', server.endpoints, args, options.input);
    const fix = options.exact === true ? (text: string) => text : normalise;
    assert.equal(fix(ours.stdout), fix(theirs.stdout), `stdout of ${args.join(' ')}`);
    assert.equal(ours.errors, theirs.errors, `errors of ${args.join(' ')}`);
    assert.equal(ours.code, theirs.code, `exit code of ${args.join(' ')}`);
    return ours;
  }

  const resetP = async (): Promise<void> => {
    await client.delete('p', { prefix: true });
    await client.put('p', 'old');
  };

  test('put: simple, --prev-kv, json, errors', async () => {
    await same(['put', 'p', 'new'], { setup: resetP });
    await same(['put', 'p', 'new', '--prev-kv'], { setup: resetP });
    await same(['put', 'p', 'new', '--prev-kv', '-w', 'json'], { setup: resetP });
    await same(['put', 'p', '-w', 'json'], { setup: resetP, input: 'from stdin\n' });
    await same(['put', 'p', '--ignore-value', '-w', 'json'], { setup: resetP });
    await same(['put', 'p-missing', '--ignore-value'], { setup: resetP });
    await same(['put'], {});
    await same(['put', 'p', 'x', '--lease', '1234'], {});
  });

  test('get: every flag, formats and errors (read-only, exact)', async () => {
    const pending: string[][] = [];
    for (const args of [
      ['get', 'a'],
      ['get', 'a', '-w', 'json'],
      ['get', 'b', '--prefix', '-w', 'json'],
      ['get', 'a', 'c'],
      ['get', 'b', '--from-key', '--keys-only'],
      ['get', 'b', '--prefix', '--limit', '1', '-w', 'json'],
      ['get', '', '--prefix', '--sort-by', 'MODIFY', '--order', 'DESCEND'],
      ['get', '', '--prefix', '--order', 'DESCEND', '--limit', '2'],
      ['get', 'b', '--print-value-only'],
      ['get', 'b', '--hex'],
      ['get', 'bin', '-w', 'json'],
      ['get', 'missing', '-w', 'json'],
      ['get', 'a', '-w', 'table'],
      ['get', 'a', '--sort-by', 'FOO'],
      ['get', 'a', '--consistency', 'x'],
      ['get'],
      ['get', 'a', 'b', '--prefix'],
      ['get', 'a', '--rev', '100000'],
    ]) {
      pending.push(args);
    }
    // Read-only: run all cases side by side, a few at a time.
    for (let index = 0; index < pending.length; index += 6) {
      await Promise.all(
        pending.slice(index, index + 6).map(async (args) => {
          const [ours, theirs] = await Promise.all([runToolAsync('kvctl', server.endpoints, args), runToolAsync('etcdctl', server.endpoints, args)]);
          assert.deepEqual(ours, theirs, `kvctl vs etcdctl for ${args.join(' ')}`);
        }),
      );
    }
    const first = (await client.range('b')).kvs[0].createRevision;
    await same(['get', 'b', '--rev', first.toString()], { exact: true });
  });

  test('del: single, prefix, from-key, prev-kv, json', async () => {
    const setup = async (): Promise<void> => {
      await client.delete('d', { prefix: true });
      await client.put('d1', 'x');
      await client.put('d2', 'y');
    };
    await same(['del', 'd', '--prefix', '--prev-kv'], { setup });
    await same(['del', 'd', '--prefix', '-w', 'json'], { setup });
    await same(['del', 'd2', '--prev-kv', '-w', 'json'], { setup });
    await same(['del', 'nothing'], { setup });
    await same(['del'], {});
  });

  test('txn from stdin: success, failure, json, parse errors', async () => {
    const setup = async (): Promise<void> => {
      await client.delete('t', { prefix: true });
      await client.put('t1', 'one');
      await client.put('t2', 'two');
    };
    await same(['txn'], { setup, input: 'value("t1") = "one"\n\nput t1 "new one"\nget t2\ndel t3\n\nput t9 x\n\n' });
    await same(['txn'], { setup, input: 'mod("t1") > "0"\nversion("t2") = "1"\ncreate("t1") != "0"\n\nget t --prefix\n\n\n' });
    await same(['txn'], { setup, input: 'value("t1") = "zzz"\n\nput t1 x\n\nget t2\nput t3 "a b"\n\n' });
    await same(['txn', '-w', 'json'], { setup, input: 'value("t1") = "one"\n\nput t1 "new one" --prev-kv\nget t2\ndel t2\n\n\n' });
    await same(['txn', '-i'], { setup, input: 'ver("t1") < "5"\n\nput t1 y\n\n\n' });
    await same(['txn'], { setup, input: 'bogus line\n\n\n\n' });
    await same(['txn'], { setup, input: 'value("t1") = "one"\n\nput t1\n\n\n' });
    await same(['txn'], { setup, input: 'value("t1") = "one"\n' });
  });

  test('member list and endpoint status/hashkv/health shapes', async () => {
    await same(['member', 'list'], { exact: true });
    await same(['member', 'list', '-w', 'json'], { exact: true });
    await same(['member', 'list', '-w', 'table'], { exact: true });
    await same(['endpoint', 'status', '-w', 'json']);
    await same(['endpoint', 'status', '-w', 'table']);
    await same(['endpoint', 'hashkv', '-w', 'json']);
    await same(['endpoint', 'health', '-w', 'json']);
  });

  test('alarm list/disarm and defrag: simple, json, errors', async () => {
    const memberId = (await client.cluster.status(server.endpoints[0])).header.memberId;
    const raise = async (): Promise<void> => {
      await client.cluster.alarm({ action: 'activate', memberId, alarm: 'NOSPACE' });
      await client.cluster.alarm({ action: 'activate', memberId: 12345n, alarm: 'CORRUPT' });
    };
    try {
      await same(['alarm', 'list'], { exact: true });
      await same(['alarm', 'list', '-w', 'json']);
      await same(['alarm', 'list'], { setup: raise, exact: true });
      await same(['alarm', 'list', '-w', 'json'], { setup: raise });
      await same(['alarm', 'disarm'], { setup: raise, exact: true });
      await same(['alarm', 'disarm', '-w', 'json'], { setup: raise });
      await same(['alarm', 'disarm'], { exact: true });
      await same(['alarm', 'list', '-w', 'table']);
      await same(['alarm', 'list', 'extra']);
    } finally {
      await client.cluster.alarmDisarm();
    }
    await same(['defrag'], { exact: true });
    await same(['defrag', '-w', 'json'], { exact: true });
    // Not `defrag --cluster`: etcdctl then dials the advertised URL itself as the gRPC target, so
    // its :authority is "http://host:port", which Node's HTTP/2 (nghttp2) refuses with
    // PROTOCOL_ERROR; etcd's Go server accepts it. kvctl is fine with it.
  });

  test('lease grant, list, timetolive, keep-alive --once, revoke', async () => {
    await same(['lease', 'grant', '100']);
    await same(['lease', 'grant', '100', '-w', 'json']);
    await same(['lease', 'list'], { exact: true });
    await same(['lease', 'list', '-w', 'json'], { exact: true });
    const grant = await client.leases.grant(100);
    await client.put('leased', 'v', { lease: grant.id });
    const hex = grant.id.toString(16);
    await same(['lease', 'timetolive', hex, '--keys']);
    await same(['lease', 'timetolive', hex, '--keys', '-w', 'json']);
    await same(['lease', 'keep-alive', '--once', hex, '-w', 'json']);
    await same(['lease', 'timetolive', 'abcdef', '-w', 'json']);
    await same(['lease', 'revoke', 'abcdef']);
    await same(['lease', 'revoke', 'zz']);
    const again = await client.leases.grant(100);
    const ours = runTool('kvctl', server.endpoints, ['lease', 'revoke', again.id.toString(16)]);
    assert.equal(ours.stdout, `lease ${again.id.toString(16).padStart(16, '0')} revoked\n`);
    const third = await client.leases.grant(100);
    const theirs = runTool('kvctl', server.endpoints, ['lease', 'revoke', third.id.toString(16), '-w', 'json']);
    assert.match(theirs.stdout, /^\{"header":\{"cluster_id":\d+,"member_id":\d+,"revision":\d+,"raft_term":\d+\}\}\n$/);
  });

  test('compaction prints like etcdctl', async () => {
    const put = await client.put('compact-me', 'x');
    const ours = runTool('kvctl', server.endpoints, ['compaction', put.header.revision.toString()]);
    assert.equal(ours.stdout, `compacted revision ${put.header.revision}\n`);
    await same(['compaction', '1']);
    await same(['get', 'a', '--rev', '1'], { exact: true });
  });

  test('watch of a put, a prefix delete and prev-kv (simple and json)', async () => {
    for (const extra of [[], ['-w', 'json']]) {
      const start = (await client.put('w-start', 'x')).header.revision + 1n;
      const args = ['watch', 'w/', '--prefix', '--prev-kv', '--rev', start.toString(), ...extra];
      const spawnWatch = (tool: 'kvctl' | 'etcdctl'): { output: () => string; stop: () => Promise<void> } => {
        const command = tool === 'kvctl' ? process.execPath : ETCDCTL;
        const argv = tool === 'kvctl' ? [KVCTL, '--endpoints', server.endpoints.join(','), ...args] : ['--endpoints', server.endpoints.join(','), ...args];
        const child = spawn(command, argv, { env: { ...process.env, ETCDCTL_API: '3' }, stdio: ['ignore', 'pipe', 'pipe'] });
        let output = '';
        child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
        return {
          output: () => output,
          stop: () =>
            new Promise((resolve) => {
              if (child.exitCode !== null) return resolve();
              child.once('exit', () => resolve());
              child.kill('SIGINT');
            }),
        };
      };
      const ours = spawnWatch('kvctl');
      const theirs = spawnWatch('etcdctl');
      try {
        await client.put('w/1', 'a');
        await client.put('w/1', 'b');
        await client.delete('w/', { prefix: true });
        const done = (text: string): boolean => (text.match(/DELETE|"type":1/g) ?? []).length >= 1;
        await waitFor(() => done(ours.output()) && done(theirs.output()), 10_000, 'both watches to print the delete');
      } finally {
        await ours.stop();
        await theirs.stop();
      }
      if (extra.length === 0) {
        assert.equal(ours.output(), theirs.output());
      } else {
        // How events are grouped into responses depends on timing (a watcher created after the
        // puts catches up from history in one response, a live one gets one per revision), for
        // etcd as for kvd: compare the events, in order, and each response's shape.
        const flatten = (text: string): unknown[] => text.trim().split('\n').flatMap((line) => (JSON.parse(line) as { Events: unknown[] }).Events);
        const shape = (text: string): string[] => text.trim().split('\n').map((line) => Object.keys(JSON.parse(line) as object).join(','));
        assert.deepEqual(flatten(ours.output()), flatten(theirs.output()));
        assert.deepEqual([...new Set(shape(ours.output()))], [...new Set(shape(theirs.output()))]);
      }
    }
  });

  test('`kvctl lock` excludes `etcdctl lock`; `kvctl elect` is seen by `etcdctl elect -l`', async () => {
    const start = (tool: 'kvctl' | 'etcdctl', args: string[]): { output: () => string; stop: () => Promise<void> } => {
      const command = tool === 'kvctl' ? process.execPath : ETCDCTL;
      const argv = tool === 'kvctl' ? [KVCTL, '--endpoints', server.endpoints.join(','), ...args] : ['--endpoints', server.endpoints.join(','), ...args];
      const child = spawn(command, argv, { env: { ...process.env, ETCDCTL_API: '3' }, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      return {
        output: () => output,
        stop: () =>
          new Promise((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGINT');
          }),
      };
    };
    const ours = start('kvctl', ['lock', 'cli-lock']);
    let theirs: { output: () => string; stop: () => Promise<void> } = { output: () => '', stop: async () => undefined };
    try {
      await waitFor(() => ours.output().startsWith('cli-lock/'), 10_000, 'kvctl to hold the lock');
      theirs = start('etcdctl', ['lock', 'cli-lock']);
      await waitFor(async () => (await client.range('cli-lock/', { prefix: true })).count === 2n, 10_000, 'etcdctl to queue');
      assert.equal(theirs.output(), '');
      await ours.stop();
      await waitFor(() => theirs.output().startsWith('cli-lock/'), 10_000, 'etcdctl to get the lock');
    } finally {
      await ours.stop();
      await theirs.stop();
    }
    const candidate = start('kvctl', ['elect', 'cli-elect', 'proposal-1']);
    const observer = start('etcdctl', ['elect', 'cli-elect', '-l']);
    try {
      await waitFor(() => candidate.output() !== '' && observer.output() !== '', 10_000, 'the election and its observation');
      assert.match(candidate.output(), /^cli-elect\/[0-9a-f]+\nproposal-1\n$/);
      assert.equal(observer.output(), candidate.output());
    } finally {
      await candidate.stop();
      await observer.stop();
    }
  });

  test('errors against an unreachable endpoint', async () => {
    const args = ['--dial-timeout', '300ms', '--command-timeout', '500ms', 'get', 'a'];
    const ours = runTool('kvctl', ['127.0.0.1:1'], args);
    const theirs = runTool('etcdctl', ['127.0.0.1:1'], args);
    assert.equal(ours.errors, theirs.errors);
    assert.equal(ours.code, theirs.code);
  });
});
