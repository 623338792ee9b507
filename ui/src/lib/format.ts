/** How values, sizes, ids and times are shown. Pure functions. */
import { decodeUtf8, hexDump } from './bytes.js';

export type ValueKind = 'text' | 'json' | 'binary';

/** JSON when the value parses as an object or array, text when it is UTF-8 without control characters, else binary. */
export function detectKind(bytes: Uint8Array): ValueKind {
  const text = decodeUtf8(bytes);
  if (text === undefined || /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(text)) return 'binary';
  const trimmed = text.trim();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    try {
      JSON.parse(trimmed);
      return 'json';
    } catch (error: unknown) {
      void error; // Looks like JSON but is not: plain text.
    }
  }
  return 'text';
}

/** The value as shown in a view: JSON pretty-printed, text as is, anything else as a hexdump. */
export function renderValue(bytes: Uint8Array, kind: ValueKind): string {
  if (kind === 'binary') return hexDump(bytes);
  const text = decodeUtf8(bytes) ?? '';
  if (kind === 'json') {
    try {
      return JSON.stringify(JSON.parse(text), null, 2);
    } catch (error: unknown) {
      void error; // Not JSON after all: show it as text.
    }
  }
  return text;
}

/** 1536 → "1.5 KiB". */
export function formatSize(bytes: number): string {
  if (!Number.isFinite(bytes)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** A 64-bit id (gateway int64 string) in hex, as etcdctl prints member and lease ids. */
export function hexId(id: string | undefined): string {
  if (id === undefined || id === '') return '0';
  try {
    return BigInt.asUintN(64, BigInt(id)).toString(16);
  } catch (error: unknown) {
    void error; // Not a number: show it as given.
    return id;
  }
}

/** Seconds → "1h 02m 03s" / "2m 05s" / "7s". */
export function formatSeconds(total: number): string {
  if (!Number.isFinite(total) || total < 0) return '–';
  const seconds = Math.floor(total % 60);
  const minutes = Math.floor(total / 60) % 60;
  const hours = Math.floor(total / 3600);
  if (hours > 0) return `${hours}h ${String(minutes).padStart(2, '0')}m ${String(seconds).padStart(2, '0')}s`;
  if (minutes > 0) return `${minutes}m ${String(seconds).padStart(2, '0')}s`;
  return `${seconds}s`;
}

/** A wall-clock time as HH:MM:SS (24 h, local). */
export function clockTime(ms: number): string {
  const date = new Date(ms);
  return [date.getHours(), date.getMinutes(), date.getSeconds()].map((part) => String(part).padStart(2, '0')).join(':');
}

/** An int64 field of the gateway (a string, omitted when 0) as a number. */
export function int(value: string | number | undefined): number {
  if (value === undefined || value === '') return 0;
  return Number(value);
}
