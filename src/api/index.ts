/**
 * Public surface of the client-facing API layer: the server factory, the backend contracts the
 * member implements, and the shared proto loading convention.
 */
export { createGrpcServer, startGrpcServer, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_REQUEST_TIMEOUT_MS, GRPC_OVERHEAD_BYTES } from './server.js';
export type { GrpcServerOptions, BoundUrl } from './server.js';
export type * from './backend.js';
export { PROTO_LOADER_OPTIONS, PROTO_DIR, PROTO_FILES, loadPackageDefinition, loadServices } from './proto.js';
export type { EtcdServices } from './proto.js';
export { DEFAULT_MAX_TXN_OPS } from './codec.js';
export { DEFAULT_WATCH_PROGRESS_INTERVAL_MS, WATCH_SEND_QUEUE_MAX, WATCH_CONTROL_QUEUE_MAX } from './watch-service.js';
export type { UnexpectedErrorHandler } from './call.js';
