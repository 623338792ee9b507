/**
 * kvd's .proto files (proto/ at the repository root) as grpc-js service constructors for the
 * client. The client speaks only the wire protocol, so it has its own small loader rather than
 * importing src/api.
 *
 * Start-up matters here (every kvctl command pays it): the build writes the protos' reflection
 * as JSON (scripts/gen-proto-json.mjs → dist/proto.json), which protobufjs/light turns into
 * message types without parsing .proto text; the method definitions are built the way
 * @grpc/proto-loader builds them (same serializers, same conversion options, proto/README.md)
 * minus the file descriptors only reflection servers need. `KVD_PROTO_DIR`, or a missing
 * dist/proto.json, falls back to parsing the .proto files.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs/light.js';
import { BUNDLED } from '../util/bundled.js';

/** The conversion options every part of kvd uses (proto/README.md). */
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
  return fileURLToPath(new URL(BUNDLED ? '../../proto/' : '../../../proto/', import.meta.url));
}

/** The reflection root: from the build's JSON, or parsed from the .proto files. */
function loadRoot(): protobuf.Root {
  const json = fileURLToPath(new URL(BUNDLED ? '../proto.json' : '../../proto.json', import.meta.url));
  const override = process.env.KVD_PROTO_DIR;
  if ((override === undefined || override === '') && existsSync(json)) {
    return protobuf.Root.fromJSON(JSON.parse(readFileSync(json, 'utf8')) as protobuf.INamespace);
  }
  // The full protobufjs (with its .proto parser), loaded only on this path.
  const full = createRequire(import.meta.url)('protobufjs') as typeof protobuf;
  const dir = protoDir();
  const root = new full.Root();
  root.resolvePath = (_origin: string, target: string) => (target.startsWith('/') ? target : join(dir, target));
  root.loadSync([...PROTO_FILES], { keepCase: true });
  return root;
}

/** grpc-js method definitions of one service, as @grpc/proto-loader makes them. */
function serviceDefinition(service: protobuf.Service, fullName: string): grpc.ServiceDefinition {
  const definition: Record<string, grpc.MethodDefinition<object, object>> = {};
  for (const method of service.methodsArray) {
    method.resolve();
    const request = method.resolvedRequestType;
    const response = method.resolvedResponseType;
    if (request === null || response === null) throw new Error(`proto method ${fullName}.${method.name} has unresolved types`);
    definition[method.name] = {
      path: `/${fullName}/${method.name}`,
      requestStream: method.requestStream === true,
      responseStream: method.responseStream === true,
      requestSerialize: serializer(request),
      requestDeserialize: deserializer(request),
      responseSerialize: serializer(response),
      responseDeserialize: deserializer(response),
      originalName: method.name.charAt(0).toLowerCase() + method.name.slice(1),
    };
  }
  return definition;
}

function serializer(type: protobuf.Type): (value: object) => Buffer {
  return (value) => {
    if (Array.isArray(value)) throw new Error(`Failed to serialize message: expected object with ${type.name} structure, got array instead`);
    return type.encode(type.fromObject(value)).finish() as Buffer; // a Buffer under Node (protobufjs' BufferWriter)
  };
}

function deserializer(type: protobuf.Type): (bytes: Buffer) => object {
  return (bytes) => type.toObject(type.decode(bytes), PROTO_LOADER_OPTIONS);
}

/** Loads (once per process, synchronously) and returns the client's service constructors. */
export function loadClientServices(): ClientServices {
  if (cached !== undefined) return cached;
  const root = loadRoot();
  root.resolveAll();
  const make = (name: ServiceName): grpc.ServiceClientConstructor => {
    const fullName = `etcdserverpb.${name}`;
    return grpc.makeGenericClientConstructor(serviceDefinition(root.lookupService(fullName), fullName), name);
  };
  cached = { KV: make('KV'), Watch: make('Watch'), Lease: make('Lease'), Cluster: make('Cluster'), Maintenance: make('Maintenance'), Auth: make('Auth') };
  return cached;
}
