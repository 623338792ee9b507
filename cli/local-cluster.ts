#!/usr/bin/env node
/**
 * `npm start`: a local 3-member kvd cluster in the foreground, laid out like etcd's Procfile
 * (clients on 2379 / 22379 / 32379, peers on 12380 / 22380 / 32380, token etcd-cluster-1). Data
 * goes under ./data/<name> unless --data-dir says otherwise. Each member's log lines are prefixed
 * with its name; Ctrl-C (or SIGTERM) stops every member cleanly, and a second Ctrl-C kills them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { join, resolve } from 'node:path';
import { Command } from 'commander';

interface MemberPlan { readonly name: string; readonly clientPort: number; readonly peerPort: number }

const PLAN: readonly MemberPlan[] = [
  { name: 'infra1', clientPort: 2379, peerPort: 12380 },
  { name: 'infra2', clientPort: 22379, peerPort: 22380 },
  { name: 'infra3', clientPort: 32379, peerPort: 32380 },
];

const COLORS = ['\x1b[36m', '\x1b[33m', '\x1b[35m'];

function main(): void {
  const program = new Command('kvd-local-cluster')
    .description('run a local 3-member kvd cluster in the foreground (Ctrl-C stops it)')
    .option('--data-dir <dir>', 'parent directory of the members\' data dirs', './data')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--log-level <level>', 'member log level', 'info')
    .allowExcessArguments(false)
    .parse(process.argv);
  const options = program.opts<{ dataDir: string; host: string; logLevel: string }>();
  // The bundled member (dist/bin/kvd.js, scripts/bundle.mjs), as the `kvd` command runs it.
  const kvd = fileURLToPath(new URL('../bin/kvd.js', import.meta.url));
  const cluster = PLAN.map((m) => `${m.name}=http://${options.host}:${m.peerPort}`).join(',');
  const color = process.stdout.isTTY === true;
  const children = new Map<string, ChildProcess>();

  PLAN.forEach((member, index) => {
    const args = [
      kvd,
      '--name', member.name,
      '--data-dir', join(resolve(options.dataDir), member.name),
      '--listen-client-urls', `http://${options.host}:${member.clientPort}`,
      '--advertise-client-urls', `http://${options.host}:${member.clientPort}`,
      '--listen-peer-urls', `http://${options.host}:${member.peerPort}`,
      '--initial-advertise-peer-urls', `http://${options.host}:${member.peerPort}`,
      '--initial-cluster-token', 'etcd-cluster-1',
      '--initial-cluster', cluster,
      '--initial-cluster-state', 'new',
      '--log-level', options.logLevel,
    ];
    // Each member in its own process group: a terminal's Ctrl-C reaches only this launcher, which
    // forwards one SIGTERM, instead of every member receiving the signal twice.
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    children.set(member.name, child);
    const prefix = color ? `${COLORS[index % COLORS.length]}${member.name.padEnd(7)}|\x1b[0m ` : `${member.name.padEnd(7)}| `;
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream }).on('line', (line) => process.stdout.write(`${prefix}${line}\n`));
    }
    child.on('exit', (code, signal) => {
      process.stdout.write(`${prefix}exited (${signal ?? `code ${code}`})\n`);
      children.delete(member.name);
      if (children.size === 0) process.exit(stopping ? 0 : 1);
    });
  });
  process.stdout.write(`kvd local cluster: clients on ${PLAN.map((m) => `${options.host}:${m.clientPort}`).join(', ')}; data under ${resolve(options.dataDir)}; Ctrl-C to stop\n`);

  let stopping = false;
  const stop = (): void => {
    if (stopping) {
      for (const child of children.values()) child.kill('SIGKILL');
      return;
    }
    stopping = true;
    for (const child of children.values()) child.kill('SIGTERM');
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  // If the launcher dies some other way, take the members with it.
  process.on('exit', () => {
    for (const child of children.values()) child.kill('SIGKILL');
  });
}

main();
