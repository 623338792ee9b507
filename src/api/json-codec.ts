/**
 * etcd's JSON mapping of its protobuf messages, as its 3.4 grpc-gateway applies it (golang/protobuf
 * jsonpb with OrigName, no defaults emitted, unknown fields allowed):
 *
 * - in: proto field names or their lowerCamel JSON names; int64/uint64/int32 as number or string;
 *   enums as name or number; bytes as standard padded base64; null leaves a field unset; unknown
 *   fields are ignored. Wrong shapes fail with Go's texts ("json: cannot unmarshal number into Go
 *   value of type []uint8", `unknown value "FOO" for enum etcdserverpb.RangeRequest_SortOrder`).
 * - out: proto field names, 64-bit integers as strings, 32-bit as numbers, bytes base64, enums by
 *   name, and every zero value left out (false, 0, "", empty lists, unset messages) except oneof
 *   members, which are written whenever set.
 *
 * Messages travel as protobuf wire bytes on both sides: a JSON request becomes the bytes a gRPC
 * client would have sent (so the gRPC service's own deserializer, size checks and handlers run),
 * and a response is read from the bytes the gRPC service's serializer produced. One encoding,
 * two faces.
 */
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { PROTO_DIR, PROTO_FILES } from './proto.js';
import { GoJsonSyntaxError, decodeGoBase64, type GoJsonValue } from './go-json.js';

/** A request body that does not map onto the message (Go's error text). */
export class JsonMappingError extends Error {
  override name = 'JsonMappingError';
}

let cachedRoot: protobuf.Root | undefined;

/** kvd's protos as protobufjs reflection (parsed once per process). */
export function protoRoot(): protobuf.Root {
  if (cachedRoot !== undefined) return cachedRoot;
  const root = new protobuf.Root();
  root.resolvePath = (_origin: string, target: string) => (target.startsWith('/') ? target : join(PROTO_DIR, target));
  root.loadSync([...PROTO_FILES], { keepCase: true });
  root.resolveAll();
  cachedRoot = root;
  return root;
}

/** A message type by fully qualified name (e.g. 'etcdserverpb.RangeRequest'). */
export function messageType(name: string): protobuf.Type {
  return protoRoot().lookupType(name);
}

/** Go's name of an enum type: package, then nested type names joined by '_'. */
function goEnumName(enumType: protobuf.Enum): string {
  const parts: string[] = [enumType.name];
  let parent = enumType.parent;
  while (parent !== null && parent instanceof protobuf.Type) {
    parts.unshift(parent.name);
    parent = parent.parent;
  }
  const pkg = parent === null ? '' : parent.fullName.replace(/^\./, '');
  return `${pkg}.${parts.join('_')}`;
}

function jsonKind(value: GoJsonValue): string {
  if (value === null) return 'null';
  if (typeof value === 'boolean') return 'bool';
  if (typeof value === 'string') return 'string';
  if (Array.isArray(value)) return 'array';
  if ('number' in value) return 'number';
  return 'object';
}

function cannot(value: GoJsonValue, goType: string, detail?: string): never {
  const what = detail === undefined ? jsonKind(value) : `number ${detail}`;
  throw new JsonMappingError(`json: cannot unmarshal ${what} into Go value of type ${goType}`);
}

const INTEGER_TYPES: Record<string, { goType: string; min: bigint; max: bigint }> = {
  int64: { goType: 'int64', min: -(2n ** 63n), max: 2n ** 63n - 1n },
  sint64: { goType: 'int64', min: -(2n ** 63n), max: 2n ** 63n - 1n },
  sfixed64: { goType: 'int64', min: -(2n ** 63n), max: 2n ** 63n - 1n },
  uint64: { goType: 'uint64', min: 0n, max: 2n ** 64n - 1n },
  fixed64: { goType: 'uint64', min: 0n, max: 2n ** 64n - 1n },
  int32: { goType: 'int32', min: -(2n ** 31n), max: 2n ** 31n - 1n },
  sint32: { goType: 'int32', min: -(2n ** 31n), max: 2n ** 31n - 1n },
  sfixed32: { goType: 'int32', min: -(2n ** 31n), max: 2n ** 31n - 1n },
  uint32: { goType: 'uint32', min: 0n, max: 2n ** 32n - 1n },
  fixed32: { goType: 'uint32', min: 0n, max: 2n ** 32n - 1n },
};

/** jsonpb: numbers may come quoted; the quotes are dropped and the rest read as a JSON number. */
function integerOf(value: GoJsonValue, type: string): string {
  const spec = INTEGER_TYPES[type];
  let text: string;
  if (typeof value === 'string') {
    text = value;
    if (text === '') throw new JsonMappingError('unexpected end of JSON input');
    if (!/^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/.test(text)) {
      const at = /^-?(0|[1-9]\d*)/.exec(text)?.[0].length ?? (text.startsWith('-') ? 1 : 0);
      const bad = text.charCodeAt(at);
      const quoted = JSON.stringify(String.fromCharCode(bad)).slice(1, -1);
      const context = at === 0 ? 'looking for beginning of value' : text[at - 1] === '-' ? 'in numeric literal' : 'after top-level value';
      throw new GoJsonSyntaxError(`invalid character '${quoted === "'" ? "\\'" : quoted}' ${context}`);
    }
  } else if (value !== null && typeof value === 'object' && !Array.isArray(value) && 'number' in value) {
    text = value.number;
  } else {
    return cannot(value, spec.goType);
  }
  if (!/^-?\d+$/.test(text)) return cannot(value, spec.goType, text);
  const big = BigInt(text);
  if (big < spec.min || big > spec.max) return cannot(value, spec.goType, text);
  return big.toString();
}

/** The JSON request → a plain object protobufjs' fromObject takes (proto names, checked values). */
function toPlain(type: protobuf.Type, value: GoJsonValue): Record<string, unknown> {
  if (value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value) || 'number' in value) return cannot(value, 'map[string]json.RawMessage');
  const out: Record<string, unknown> = {};
  for (const [key, member] of value.members) {
    const field = type.fields[key] ?? type.fieldsArray.find((candidate) => candidate.options?.json_name === key || lowerCamel(candidate.name) === key);
    if (field === undefined) continue; // unknown fields are ignored
    if (member === null) continue;
    if (field.repeated) {
      if (!Array.isArray(member)) return cannot(member, '[]json.RawMessage');
      out[field.name] = member.map((item) => fieldValue(field, item));
    } else {
      out[field.name] = fieldValue(field, member);
    }
  }
  return out;
}

function lowerCamel(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function fieldValue(field: protobuf.Field, value: GoJsonValue): unknown {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Type) return toPlain(resolved, value);
  if (resolved instanceof protobuf.Enum) {
    if (typeof value === 'string') {
      if (!Object.hasOwn(resolved.values, value)) throw new JsonMappingError(`unknown value ${JSON.stringify(value)} for enum ${goEnumName(resolved)}`);
      return resolved.values[value];
    }
    if (value !== null && typeof value === 'object' && !Array.isArray(value) && 'number' in value) {
      if (!/^-?\d+$/.test(value.number)) return cannot(value, goEnumName(resolved), value.number);
      return Number(value.number);
    }
    return cannot(value, goEnumName(resolved));
  }
  switch (field.type) {
    case 'bytes':
      if (typeof value !== 'string') return cannot(value, '[]uint8');
      return decodeGoBase64(value);
    case 'string':
      if (typeof value !== 'string') return cannot(value, 'string');
      return value;
    case 'bool':
      if (typeof value !== 'boolean') return cannot(value, 'bool');
      return value;
    case 'double':
    case 'float':
      if (value !== null && typeof value === 'object' && !Array.isArray(value) && 'number' in value) return Number(value.number);
      if (typeof value === 'string') return Number(value);
      return cannot(value, field.type === 'float' ? 'float32' : 'float64');
    default:
      if (INTEGER_TYPES[field.type] !== undefined) return integerOf(value, field.type);
      throw new JsonMappingError(`unsupported field type ${field.type}`);
  }
}

/**
 * A JSON request value (or undefined for an empty body) → the message's protobuf wire bytes.
 * Throws JsonMappingError / GoJsonSyntaxError with Go's texts.
 */
export function jsonToWire(type: protobuf.Type, value: GoJsonValue | undefined): Buffer {
  const plain = value === undefined ? {} : toPlain(type, value);
  const message = type.fromObject(plain);
  return Buffer.from(type.encode(message).finish());
}

/** Protobuf wire bytes of a response → etcd's JSON text. */
export function wireToJson(type: protobuf.Type, bytes: Uint8Array): string {
  return JSON.stringify(messageToJson(type, type.decode(bytes) as unknown as Record<string, unknown>));
}

const LONG_TYPES = new Set(['int64', 'sint64', 'sfixed64', 'uint64', 'fixed64']);
const UNSIGNED = new Set(['uint64', 'fixed64']);

function longText(value: unknown, unsigned: boolean): string {
  if (typeof value === 'number') return String(value);
  if (typeof value === 'string') return value;
  const long = value as { low: number; high: number; unsigned?: boolean };
  const big = (BigInt(long.high >>> 0) << 32n) | BigInt(long.low >>> 0);
  return (unsigned ? BigInt.asUintN(64, big) : BigInt.asIntN(64, big)).toString();
}

function isZeroLong(value: unknown): boolean {
  if (typeof value === 'number') return value === 0;
  const long = value as { low: number; high: number };
  return long.low === 0 && long.high === 0;
}

/** A decoded protobufjs message → etcd's JSON object (field order as declared). */
export function messageToJson(type: protobuf.Type, message: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of type.fieldsArray) {
    const value = message[field.name];
    const inOneof = field.partOf !== null && field.partOf !== undefined;
    if (inOneof && !Object.hasOwn(message, field.name)) continue;
    if (field.repeated) {
      const list = Array.isArray(value) ? value : [];
      if (list.length === 0) continue;
      out[field.name] = list.map((item) => scalarToJson(field, item));
      continue;
    }
    if (value === null || value === undefined) continue;
    if (!inOneof && isDefault(field, value)) continue;
    out[field.name] = scalarToJson(field, value);
  }
  return out;
}

function isDefault(field: protobuf.Field, value: unknown): boolean {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Type) return false;
  if (resolved instanceof protobuf.Enum) return value === 0;
  if (LONG_TYPES.has(field.type)) return isZeroLong(value);
  switch (field.type) {
    case 'bytes': return (value as Uint8Array).length === 0;
    case 'string': return value === '';
    case 'bool': return value === false;
    default: return value === 0;
  }
}

function scalarToJson(field: protobuf.Field, value: unknown): unknown {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Type) return messageToJson(resolved, value as Record<string, unknown>);
  if (resolved instanceof protobuf.Enum) return resolved.valuesById[value as number] ?? value;
  if (LONG_TYPES.has(field.type)) return longText(value, UNSIGNED.has(field.type));
  if (field.type === 'bytes') return Buffer.from(value as Uint8Array).toString('base64');
  return value;
}
