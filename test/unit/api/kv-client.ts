// A grpc-js KV client for the api tests that compare two servers' answers (client-http2,
// unary-fast-path): unary calls as promises, and their outcome as a value or a status.
import * as grpc from '@grpc/grpc-js';
import { loadServices } from '../../../src/api/proto.js';
import type { PbMessage } from '../../../src/api/codec.js';

const services = loadServices();

export type KvClient = grpc.Client & Record<string, (request: PbMessage, metadata: grpc.Metadata, options: grpc.CallOptions, callback: (error: grpc.ServiceError | null, value: PbMessage) => void) => grpc.ClientUnaryCall>;

/** A KV client with no message size limits of its own (the servers' limits are what is tested). */
export function kvClient(port: number, options: grpc.ChannelOptions = {}): KvClient {
  return new services.KV(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1, ...options }) as unknown as KvClient;
}

export function call(client: KvClient, method: string, request: PbMessage, options: grpc.CallOptions = {}, metadata = new grpc.Metadata()): Promise<PbMessage> {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, options, (error, value) => (error === null ? resolve(value) : reject(error)));
  });
}

/** The call's value, or its status code and details. */
export async function settle(promise: Promise<PbMessage>): Promise<{ value?: PbMessage; code?: number; details?: string }> {
  try {
    return { value: await promise };
  } catch (error: unknown) {
    const status = error as grpc.ServiceError;
    return { code: status.code, details: status.details };
  }
}
