/**
 * Loading of kvd's etcd-v3-compatible .proto files (proto/ at the repository root).
 *
 * Everyone in kvd (server, client, tests) loads the protos the same way, with
 * {@link PROTO_LOADER_OPTIONS}, so the JavaScript shapes of messages agree everywhere:
 * field names as in the .proto (snake_case / etcd's own spelling), 64-bit integers as decimal
 * strings, enums as their names, bytes as Buffer, unset fields filled with defaults, and for each
 * oneof a virtual property naming the member that is set.
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { BUNDLED } from '../util/bundled.js';

/** The one proto-loader configuration used across kvd. Do not vary it per caller. */
export const PROTO_LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  bytes: Buffer,
} as const satisfies protoLoader.Options;

/**
 * Absolute path of the repository's proto/ directory. Resolved from this module's location:
 * compiled code lives at <outDir>/src/api/proto.js (or in a bundle in <outDir>/bin), and <outDir>
 * sits in the repository root.
 */
export const PROTO_DIR: string = fileURLToPath(new URL(BUNDLED ? '../../proto/' : '../../../proto/', import.meta.url));

/** Every .proto file kvd serves, relative to {@link PROTO_DIR} (also the import root). */
export const PROTO_FILES: readonly string[] = [
  'etcdserverpb/rpc.proto',
  'mvccpb/kv.proto',
  'authpb/auth.proto',
  'v3lockpb/v3lock.proto',
  'v3electionpb/v3election.proto',
  'grpc/health/v1/health.proto',
];

/** Loads every kvd proto file synchronously into a proto-loader package definition. */
export function loadPackageDefinition(): protoLoader.PackageDefinition {
  return protoLoader.loadSync([...PROTO_FILES], { ...PROTO_LOADER_OPTIONS, includeDirs: [PROTO_DIR] });
}

/** The service constructors kvd registers or dials, by fully qualified name. */
export interface EtcdServices {
  readonly KV: grpc.ServiceClientConstructor;
  readonly Watch: grpc.ServiceClientConstructor;
  readonly Lease: grpc.ServiceClientConstructor;
  readonly Cluster: grpc.ServiceClientConstructor;
  readonly Maintenance: grpc.ServiceClientConstructor;
  readonly Auth: grpc.ServiceClientConstructor;
  readonly Lock: grpc.ServiceClientConstructor;
  readonly Election: grpc.ServiceClientConstructor;
  readonly Health: grpc.ServiceClientConstructor;
}

/**
 * Loads the protos and returns the service constructors (each has a `.service` definition for
 * `server.addService`, and can be instantiated as a client). The result is cached: the proto
 * files are parsed once per process.
 */
export function loadServices(): EtcdServices {
  if (cachedServices !== undefined) return cachedServices;
  const root = grpc.loadPackageDefinition(loadPackageDefinition());
  const pick = (path: string): grpc.ServiceClientConstructor => {
    let node: unknown = root;
    for (const part of path.split('.')) node = (node as Record<string, unknown>)[part];
    if (typeof node !== 'function') throw new Error(`proto service ${path} not found in ${PROTO_DIR}`);
    return node as grpc.ServiceClientConstructor;
  };
  cachedServices = {
    KV: pick('etcdserverpb.KV'),
    Watch: pick('etcdserverpb.Watch'),
    Lease: pick('etcdserverpb.Lease'),
    Cluster: pick('etcdserverpb.Cluster'),
    Maintenance: pick('etcdserverpb.Maintenance'),
    Auth: pick('etcdserverpb.Auth'),
    Lock: pick('v3lockpb.Lock'),
    Election: pick('v3electionpb.Election'),
    Health: pick('grpc.health.v1.Health'),
  };
  return cachedServices;
}

let cachedServices: EtcdServices | undefined;
