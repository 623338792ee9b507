// Goal: readable, reviewable traces of the core's behaviour (etcd-style data-driven tests): each
// scenario file in scenarios/ is a script of commands, each followed by `----` and the golden
// output (the Readies processed and the events raised while the command ran).
// Method: run each command on the in-memory harness and compare its output with the golden text.
// KVD_REWRITE=1 rewrites the files with the actual output; review the diff before committing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Cluster, text } from './harness.js';
import type { RaftEvent } from '../../../src/raft/config.js';
import type { Entry, Message, NodeId } from '../../../src/raft/types.js';
import type { Ready } from '../../../src/raft/ready.js';

const root = resolve(dirname(new URL(import.meta.url).pathname), '../../../..');
const directory = join(root, 'test/unit/raft/scenarios');

const entry = (e: Entry): string => `${e.index}/${e.term}${e.type === 'conf-change' ? ' conf' : e.data.length === 0 ? ' noop' : ` "${new TextDecoder().decode(e.data)}"`}`;

function describeMessage(m: Message): string {
  const head = `${m.from}->${m.to} ${m.type} t${m.term}`;
  switch (m.type) {
    case 'append':
      return `${head} prev=${m.index}/${m.logTerm} commit=${m.commit} [${m.entries.map(entry).join(', ')}]`;
    case 'append-response':
      return `${head} index=${m.index}${m.reject ? ` reject hint=${m.rejectHint}/${m.logTerm}` : ''}`;
    case 'vote':
    case 'pre-vote':
      return `${head} last=${m.index}/${m.logTerm}${m.campaign === 'transfer' ? ' transfer' : ''}`;
    case 'vote-response':
    case 'pre-vote-response':
      return `${head}${m.reject ? ' reject' : ''}`;
    case 'heartbeat':
      return `${head} commit=${m.commit}${m.context === null ? '' : ` ctx=${new TextDecoder().decode(m.context)}`}`;
    case 'heartbeat-response':
      return `${head}${m.context === null ? '' : ` ctx=${new TextDecoder().decode(m.context)}`}`;
    case 'read-index':
      return `${head} ctx=${new TextDecoder().decode(m.context)}`;
    case 'read-index-response':
      return `${head} index=${m.index} ctx=${new TextDecoder().decode(m.context)}`;
    case 'snapshot':
      return `${head} index=${m.snapshot.metadata.index}/${m.snapshot.metadata.term}`;
    case 'propose':
      return `${head} [${m.entries.length} entries]`;
    case 'propose-refused':
      return `${head} [${m.entries.length} entries] ${m.reason}`;
    case 'transfer-leader':
      return `${head} to=${m.transferee}`;
    case 'timeout-now':
      return head;
  }
}

function describeReady(id: NodeId, ready: Ready): string[] {
  const lines = [`${id} ready:`];
  if (ready.softState !== undefined) lines.push(`  soft: ${ready.softState.role} leader=${ready.softState.leader}`);
  if (ready.hardState !== undefined) lines.push(`  hard: term=${ready.hardState.term} vote=${ready.hardState.vote} commit=${ready.hardState.commit}`);
  if (ready.entries.length > 0) lines.push(`  entries: ${ready.entries.map(entry).join(', ')}`);
  if (ready.snapshot !== undefined) lines.push(`  snapshot: ${ready.snapshot.metadata.index}/${ready.snapshot.metadata.term}`);
  for (const m of ready.messages) lines.push(`  send: ${describeMessage(m)}`);
  if (ready.committedEntries.length > 0) lines.push(`  apply: ${ready.committedEntries.map(entry).join(', ')}`);
  for (const s of ready.readStates) lines.push(`  read: ${new TextDecoder().decode(s.context)} @${s.index}`);
  for (const r of ready.refusedProposals) lines.push(`  refused: "${new TextDecoder().decode(r.data)}" ${r.reason}`);
  return lines;
}

function describeEvent(event: RaftEvent): string {
  const { kind, id, term, ...rest } = event;
  const details = Object.entries(rest)
    .map(([key, value]) => `${key}=${typeof value === 'object' ? JSON.stringify(value, (_, v: unknown) => (typeof v === 'bigint' ? Number(v) : v)) : String(value)}`)
    .join(' ');
  return `${id} event: ${kind} term=${term}${details === '' ? '' : ` ${details}`}`;
}

class Runner {
  cluster: Cluster | undefined;
  readonly #seen = new Map<NodeId, { events: number; readies: number }>();

  get c(): Cluster {
    assert.ok(this.cluster !== undefined, 'add-nodes first');
    return this.cluster;
  }

  run(command: string): string {
    const [name, ...args] = command.trim().split(/\s+/);
    const ids = (list: string[]): NodeId[] => list.map((value) => BigInt(value));
    switch (name) {
      case 'add-nodes':
        this.cluster = new Cluster({ voters: Number(args[0]), overrides: { electionTicks: Number(args[1] ?? 10) } });
        break;
      case 'campaign':
        this.c.node(BigInt(args[0])).campaign();
        break;
      case 'propose':
        return `${args[0]}: ${JSON.stringify(this.c.node(BigInt(args[0])).propose(text(args[1])))}`;
      case 'read-index':
        return `${args[0]}: ${JSON.stringify(this.c.node(BigInt(args[0])).readIndex(text(args[1])))}`;
      case 'transfer':
        this.c.node(BigInt(args[0])).transferLeader(BigInt(args[1]));
        break;
      case 'tick':
        for (let i = 0; i < Number(args[1] ?? 1); i++) this.c.node(BigInt(args[0])).tick();
        break;
      case 'process-ready':
        for (const id of ids(args)) this.c.processReady(id);
        break;
      case 'deliver':
        this.c.deliver();
        break;
      case 'stabilize':
        this.c.stabilize();
        break;
      case 'partition': {
        const bar = args.indexOf('|');
        this.c.partition(ids(args.slice(0, bar)), ids(args.slice(bar + 1)));
        break;
      }
      case 'heal':
        this.c.heal();
        break;
      case 'status': {
        const s = this.c.node(BigInt(args[0])).status();
        return `${args[0]}: ${s.role} term=${s.term} leader=${s.leader} commit=${s.commit} applied=${s.applied} last=${s.lastIndex}`;
      }
      default:
        throw new Error(`unknown command ${name}`);
    }
    return this.#newOutput();
  }

  /** Readies and events produced since the last command, member by member in id order. */
  #newOutput(): string {
    const lines: string[] = [];
    for (const [id, member] of this.c.members) {
      const seen = this.#seen.get(id) ?? { events: 0, readies: 0 };
      for (const event of member.events.slice(seen.events)) lines.push(describeEvent(event));
      for (const ready of member.readies.slice(seen.readies)) lines.push(...describeReady(id, ready));
      this.#seen.set(id, { events: member.events.length, readies: member.readies.length });
    }
    return lines.length === 0 ? 'ok' : lines.join('\n');
  }
}

/** Parses blocks of `command\n----\noutput\n\n`; lines starting with # outside outputs are comments. */
function parse(source: string): Array<{ command: string; expected: string }> {
  const blocks: Array<{ command: string; expected: string }> = [];
  const lines = source.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.trim() === '' || line.startsWith('#')) continue;
    assert.equal(lines[i + 1], '----', `line ${i + 2}: expected ---- after command`);
    const output: string[] = [];
    for (i += 2; i < lines.length && lines[i] !== ''; i++) output.push(lines[i]);
    blocks.push({ command: line, expected: output.join('\n') });
  }
  return blocks;
}

for (const file of readdirSync(directory).filter((name) => name.endsWith('.txt')).sort()) {
  test(`scenario ${file}`, () => {
    const path = join(directory, file);
    const blocks = parse(readFileSync(path, 'utf8'));
    const runner = new Runner();
    const actual = blocks.map((block) => ({ command: block.command, output: runner.run(block.command) }));
    if (process.env.KVD_REWRITE === '1') {
      const header = readFileSync(path, 'utf8').split('\n').filter((line, index, all) => line.startsWith('#') && all.slice(0, index).every((l) => l.startsWith('#')));
      writeFileSync(path, `${[...header, ''].join('\n')}${actual.map((a) => `${a.command}\n----\n${a.output}\n`).join('\n')}`);
      return;
    }
    for (let i = 0; i < blocks.length; i++) assert.equal(actual[i].output, blocks[i].expected, `${file}: command ${i + 1} "${blocks[i].command}"`);
  });
}
