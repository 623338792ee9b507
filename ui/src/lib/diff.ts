/**
 * A line diff (longest common subsequence), for a value or a document between two revisions.
 * Bounded: texts longer than {@link DIFF_LINES_MAX} lines on either side are compared as
 * "everything removed, everything added" instead of building a quadratic table.
 */

/** Most lines on a side that get a real LCS diff. */
export const DIFF_LINES_MAX = 2_000;

export interface DiffLine {
  readonly op: 'same' | 'add' | 'del';
  readonly text: string;
}

export function diffLines(before: string, after: string): DiffLine[] {
  const a = before === '' ? [] : before.split('\n');
  const b = after === '' ? [] : after.split('\n');
  if (a.length > DIFF_LINES_MAX || b.length > DIFF_LINES_MAX) {
    return [...a.map((text) => ({ op: 'del' as const, text })), ...b.map((text) => ({ op: 'add' as const, text }))];
  }
  // lcs[i][j]: length of the LCS of a[i..] and b[j..], in one flat array.
  const width = b.length + 1;
  const lcs = new Uint32Array((a.length + 1) * width);
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      lcs[i * width + j] = a[i] === b[j] ? lcs[(i + 1) * width + j + 1] + 1 : Math.max(lcs[(i + 1) * width + j], lcs[i * width + j + 1]);
    }
  }
  const out: DiffLine[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    if (a[i] === b[j]) {
      out.push({ op: 'same', text: a[i] });
      i++;
      j++;
    } else if (lcs[(i + 1) * width + j] >= lcs[i * width + j + 1]) {
      out.push({ op: 'del', text: a[i++] });
    } else {
      out.push({ op: 'add', text: b[j++] });
    }
  }
  while (i < a.length) out.push({ op: 'del', text: a[i++] });
  while (j < b.length) out.push({ op: 'add', text: b[j++] });
  return out;
}

/** Key → value maps compared: what was added, removed or changed (sorted by key). */
export interface MapDiff {
  readonly key: string;
  readonly op: 'add' | 'del' | 'change' | 'same';
  readonly before: string | undefined;
  readonly after: string | undefined;
}

export function diffMaps(before: ReadonlyMap<string, string>, after: ReadonlyMap<string, string>): MapDiff[] {
  const keys = [...new Set([...before.keys(), ...after.keys()])].sort();
  return keys.map((key) => {
    const a = before.get(key);
    const b = after.get(key);
    const op = a === undefined ? 'add' : b === undefined ? 'del' : a === b ? 'same' : 'change';
    return { key, op, before: a, after: b };
  });
}
