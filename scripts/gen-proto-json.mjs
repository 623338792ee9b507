#!/usr/bin/env node
// Build step: parses proto/*.proto once and writes their protobufjs JSON descriptor to
// dist/proto.json, so that clients (kvctl) load reflection from JSON with protobufjs/light at
// start-up instead of parsing .proto text (proto/README.md, "Loading convention").
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import protobuf from 'protobufjs';

const protoDir = resolve('proto');
const files = [
  'etcdserverpb/rpc.proto',
  'mvccpb/kv.proto',
  'authpb/auth.proto',
  'v3lockpb/v3lock.proto',
  'v3electionpb/v3election.proto',
  'grpc/health/v1/health.proto',
];
const root = new protobuf.Root();
root.resolvePath = (_origin, target) => (target.startsWith('/') ? target : join(protoDir, target));
root.loadSync(files, { keepCase: true });
root.resolveAll();
mkdirSync('dist', { recursive: true });
writeFileSync('dist/proto.json', JSON.stringify(root.toJSON({ keepComments: false })));
