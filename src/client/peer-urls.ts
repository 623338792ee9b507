/**
 * The client-side check of member peer URLs that etcd's Go client runs before MemberAdd and
 * MemberUpdate (`types.NewURLs`: Go's `url.Parse`, then scheme, `host:port` and "no path"), with
 * the same messages, so a bad URL fails before anything is sent and kvctl prints what etcdctl
 * prints. Only the parts of `url.Parse` a peer URL can reach are reproduced: control characters,
 * scheme syntax, a colon in a scheme-less first segment, brackets, the port and host characters.
 */

/** Schemes etcd accepts for peer URLs. */
const SCHEMES = new Set(['http', 'https', 'unix', 'unixs']);

/** Characters Go's url package leaves unescaped in a host (besides letters and digits). */
const HOST_CHARACTERS = new Set("!$&'()*+,;=:[]<>\"-_.~%");

/** Go's %q for the strings these messages quote (printable ASCII: same as JSON). */
function quote(text: string): string {
  return JSON.stringify(text);
}

/** The scheme and the rest, as Go's getScheme splits them; a string is an error message. */
function splitScheme(raw: string): { scheme: string; rest: string } | string {
  for (let index = 0; index < raw.length; index += 1) {
    const character = raw[index];
    if (/[a-zA-Z]/.test(character)) continue;
    if (/[0-9+.-]/.test(character)) {
      if (index === 0) return { scheme: '', rest: raw };
      continue;
    }
    if (character === ':') {
      if (index === 0) return 'missing protocol scheme';
      return { scheme: raw.slice(0, index).toLowerCase(), rest: raw.slice(index + 1) };
    }
    return { scheme: '', rest: raw };
  }
  return { scheme: '', rest: raw };
}

/** Go's validOptionalPort: empty, or a colon followed by digits only. */
function validOptionalPort(port: string): boolean {
  return port === '' || /^:[0-9]*$/.test(port);
}

/** Go's parseHost (without zone handling); returns the host or an error message. */
function parseHost(host: string): { host: string } | string {
  if (host.startsWith('[')) {
    const close = host.lastIndexOf(']');
    if (close < 0) return "missing ']' in host";
    const port = host.slice(close + 1);
    if (!validOptionalPort(port)) return `invalid port ${quote(port)} after host`;
    return { host };
  }
  const colon = host.lastIndexOf(':');
  if (colon >= 0 && !validOptionalPort(host.slice(colon))) return `invalid port ${quote(host.slice(colon))} after host`;
  for (let index = 0; index < host.length; index += 1) {
    const character = host[index];
    if (character === '%') {
      const escape = host.slice(index, index + 3);
      if (!/^%[0-9a-fA-F]{2}$/.test(escape)) return `invalid URL escape ${quote(escape)}`;
      index += 2;
      continue;
    }
    if (character.charCodeAt(0) < 0x80 && !/[a-zA-Z0-9]/.test(character) && !HOST_CHARACTERS.has(character)) return `invalid character ${quote(character)} in host name`;
  }
  return { host };
}

/** What url.Parse yields that the checks need, or its error message. */
function parseUrl(raw: string): { scheme: string; host: string; path: string } | string {
  if (/[\x00-\x1f\x7f]/.test(raw)) return 'net/url: invalid control character in URL';
  const withoutFragment = raw.split('#')[0];
  const split = splitScheme(withoutFragment);
  if (typeof split === 'string') return split;
  let rest = split.rest;
  const query = rest.indexOf('?');
  if (query >= 0) rest = rest.slice(0, query);
  if (split.scheme !== '' && !rest.startsWith('/')) return { scheme: split.scheme, host: '', path: '' };
  if (split.scheme === '') {
    const segment = rest.split('/')[0];
    if (segment.includes(':')) return 'first path segment in URL cannot contain colon';
  }
  if (!rest.startsWith('//')) return { scheme: split.scheme, host: '', path: rest };
  const authorityEnd = rest.indexOf('/', 2);
  const authority = authorityEnd < 0 ? rest.slice(2) : rest.slice(2, authorityEnd);
  const path = authorityEnd < 0 ? '' : rest.slice(authorityEnd);
  const at = authority.lastIndexOf('@');
  const parsed = parseHost(at < 0 ? authority : authority.slice(at + 1));
  if (typeof parsed === 'string') return parsed;
  return { scheme: split.scheme, host: parsed.host, path };
}

/** Go's net.SplitHostPort success test. */
function hasHostPort(host: string): boolean {
  if (host.startsWith('[')) {
    const close = host.indexOf(']');
    return close >= 0 && host[close + 1] === ':' && !host.slice(close + 2).includes(':');
  }
  const colon = host.lastIndexOf(':');
  return colon >= 0 && !host.slice(0, colon).includes(':');
}

/**
 * Why etcd's Go client would refuse `url` as a peer URL (its exact message), or undefined when
 * it is acceptable. Leading and trailing white space is ignored, as in Go.
 */
export function peerUrlProblem(url: string): string | undefined {
  const trimmed = url.trim();
  const parsed = parseUrl(trimmed);
  if (typeof parsed === 'string') return `parse ${quote(trimmed)}: ${parsed}`;
  if (!SCHEMES.has(parsed.scheme)) return `URL scheme must be http, https, unix, or unixs: ${trimmed}`;
  if (!hasHostPort(parsed.host)) return `URL address does not have the form "host:port": ${trimmed}`;
  if (parsed.path !== '') return `URL must not contain a path: ${trimmed}`;
  return undefined;
}

/** The first problem among `urls` (Go's NewURLs stops at the first), or undefined. */
export function peerUrlsProblem(urls: readonly string[]): string | undefined {
  if (urls.length === 0) return 'no valid URLs given';
  for (const url of urls) {
    const problem = peerUrlProblem(url);
    if (problem !== undefined) return problem;
  }
  return undefined;
}
