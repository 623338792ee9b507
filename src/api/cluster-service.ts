/**
 * The Cluster service over a {@link ClusterBackend}. Membership changes the backend does not
 * offer answer UNIMPLEMENTED.
 */
import type * as grpc from '@grpc/grpc-js';
import type { ClusterBackend, Member } from './backend.js';
import { unary, unimplementedStatus, type HandlerContext } from './call.js';
import { decodeUint64, encodeHeader, type PbMessage } from './codec.js';

/** Options of {@link createClusterService}. */
export interface ClusterServiceOptions extends HandlerContext {
  readonly backend: ClusterBackend;
}

/** Member → etcdserverpb.Member object. */
export function encodeMember(member: Member): PbMessage {
  return {
    ID: BigInt.asUintN(64, member.id).toString(),
    name: member.name,
    peerURLs: [...member.peerUrls],
    clientURLs: [...member.clientUrls],
    isLearner: member.isLearner,
    autoPromote: member.autoPromote,
  };
}

function stringList(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
}

/** Builds the handlers of etcdserverpb.Cluster. */
export function createClusterService(options: ClusterServiceOptions): grpc.UntypedServiceImplementation {
  const { backend } = options;
  const add = backend.memberAdd?.bind(backend);
  const remove = backend.memberRemove?.bind(backend);
  const update = backend.memberUpdate?.bind(backend);
  const promote = backend.memberPromote?.bind(backend);
  return {
    MemberList: unary('MemberList', options, async (request, call) => {
      const { header, members } = await backend.memberList({ linearizable: request.linearizable === true }, call);
      return { header: encodeHeader(header), members: members.map(encodeMember) };
    }),
    MemberAdd: add === undefined ? unimplementedUnary('MemberAdd') : unary('MemberAdd', options, async (request, call) => {
      const { header, member, members } = await add({ peerUrls: stringList(request.peerURLs), isLearner: request.isLearner === true, autoPromote: request.autoPromote === true }, call);
      return { header: encodeHeader(header), member: encodeMember(member), members: members.map(encodeMember) };
    }),
    MemberRemove: remove === undefined ? unimplementedUnary('MemberRemove') : unary('MemberRemove', options, async (request, call) => {
      const { header, members } = await remove({ id: decodeUint64(request.ID) }, call);
      return { header: encodeHeader(header), members: members.map(encodeMember) };
    }),
    MemberUpdate: update === undefined ? unimplementedUnary('MemberUpdate') : unary('MemberUpdate', options, async (request, call) => {
      const { header, members } = await update({ id: decodeUint64(request.ID), peerUrls: stringList(request.peerURLs) }, call);
      return { header: encodeHeader(header), members: members.map(encodeMember) };
    }),
    MemberPromote: promote === undefined ? unimplementedUnary('MemberPromote') : unary('MemberPromote', options, async (request, call) => {
      const { header, members } = await promote({ id: decodeUint64(request.ID) }, call);
      return { header: encodeHeader(header), members: members.map(encodeMember) };
    }),
  };
}

/** A unary handler answering UNIMPLEMENTED. */
export function unimplementedUnary(method: string): grpc.handleUnaryCall<PbMessage, PbMessage> {
  return (_call, callback) => callback(unimplementedStatus(method));
}
