/**
 * Loads kvd's .proto files (proto/ at the repository root) into gRPC service constructors for
 * the client. The client speaks only the wire protocol, so it has its own small loader rather
 * than importing src/api; the options are the shared convention of proto/README.md.
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** The proto-loader options every part of kvd uses (proto/README.md). */
export const PROTO_LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  bytes: Buffer,
} as const;

/** The .proto files, relative to the proto directory (its only include root). */
export const PROTO_FILES = [
  'etcdserverpb/rpc.proto',
  'mvccpb/kv.proto',
  'authpb/auth.proto',
  'v3lockpb/v3lock.proto',
  'v3electionpb/v3election.proto',
] as const;

/** The etcd v3 services the client uses, as grpc-js client constructors. */
export interface ClientServices {
  readonly KV: grpc.ServiceClientConstructor;
  readonly Watch: grpc.ServiceClientConstructor;
  readonly Lease: grpc.ServiceClientConstructor;
  readonly Cluster: grpc.ServiceClientConstructor;
  readonly Maintenance: grpc.ServiceClientConstructor;
  readonly Auth: grpc.ServiceClientConstructor;
}

/** The names of {@link ClientServices}. */
export type ServiceName = keyof ClientServices;

let cached: ClientServices | undefined;

/**
 * The proto directory: `KVD_PROTO_DIR` when set, otherwise `proto/` three levels above this
 * compiled file (dist/src/client/ → repository root).
 */
export function protoDir(): string {
  const override = process.env.KVD_PROTO_DIR;
  if (override !== undefined && override !== '') return override;
  return fileURLToPath(new URL('../../../proto/', import.meta.url));
}

/** Loads (once per process, synchronously) and returns the client's service constructors. */
export function loadClientServices(): ClientServices {
  if (cached !== undefined) return cached;
  const definition = protoLoader.loadSync([...PROTO_FILES], { ...PROTO_LOADER_OPTIONS, includeDirs: [protoDir()] });
  const root = grpc.loadPackageDefinition(definition) as unknown as { etcdserverpb: Record<string, grpc.ServiceClientConstructor> };
  const pkg = root.etcdserverpb;
  cached = { KV: pkg.KV, Watch: pkg.Watch, Lease: pkg.Lease, Cluster: pkg.Cluster, Maintenance: pkg.Maintenance, Auth: pkg.Auth };
  return cached;
}
