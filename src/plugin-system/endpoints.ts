/**
 * What a provider plugin lets the gateway reach: method + path templates, grouped, so that an
 * access token is scoped to groups of endpoints and nothing else on the provider (organisation,
 * project, admin-key or billing APIs) is ever reachable with a stored key.
 *
 * The gateway decodes and checks the request path once (`checkPath`), matches the segments
 * against the plugin's table (`EndpointTable.match`) and builds the upstream path by joining the
 * validated segments (`upstreamPath`) — never by URL resolution, so no dot segment, encoded slash
 * or backslash can move the call elsewhere on the provider.
 */

/** Groups a token reaches by default: the calls that do inference (and list models). */
export const INFERENCE_GROUPS = [
  'chat',
  'responses',
  'completions',
  'embeddings',
  'moderations',
  'images',
  'audio',
  'models',
] as const;

/** Groups that read or store the organisation's data: a token needs an explicit grant. */
export const DATA_GROUPS = ['files', 'uploads', 'batches', 'vector_stores', 'fine_tuning'] as const;

export type InferenceGroup = (typeof INFERENCE_GROUPS)[number];
export type DataGroup = (typeof DATA_GROUPS)[number];
export type EndpointGroup = InferenceGroup | DataGroup;

export type EndpointMethod = 'GET' | 'POST' | 'DELETE';

export interface ProviderEndpoint {
  method: EndpointMethod;
  /**
   * Template relative to the plugin's base URL: literal segments, and `{name}` for one path
   * segment (an id), e.g. `/files/{file_id}/content`.
   */
  path: string;
  group: EndpointGroup;
  /**
   * `billable` (the default for POST): the provider does work it charges for — limits are reserved
   * and usage is read from the answer. `read`: retrieves, lists or deletes stored objects — one
   * request with zero tokens.
   */
  usage?: 'billable' | 'read';
  /**
   * Where the request names its model: the JSON body's `model` (the default for a billable POST),
   * the `model` field of a multipart form, or nowhere.
   */
  model?: 'json' | 'multipart' | 'none';
}

const DATA_GROUP_SET: ReadonlySet<string> = new Set(DATA_GROUPS);
const ALL_GROUPS: ReadonlySet<string> = new Set([...INFERENCE_GROUPS, ...DATA_GROUPS]);

export function isDataGroup(group: string): group is DataGroup {
  return DATA_GROUP_SET.has(group);
}

export function isEndpointGroup(group: string): group is EndpointGroup {
  return ALL_GROUPS.has(group);
}

export function usageKindOf(endpoint: ProviderEndpoint): 'billable' | 'read' {
  return endpoint.usage ?? (endpoint.method === 'POST' ? 'billable' : 'read');
}

export function modelSourceOf(endpoint: ProviderEndpoint): 'json' | 'multipart' | 'none' {
  return endpoint.model ?? (usageKindOf(endpoint) === 'billable' ? 'json' : 'none');
}

/** The spec's `ProviderConfig.endpoints`: the distinct paths of a route table. */
export function endpointPaths(routes: readonly ProviderEndpoint[]): string[] {
  return [...new Set(routes.map((r) => r.path))];
}

/**
 * Routes for a plugin that declares only the spec's `endpoints` paths (an older third-party
 * plugin): each path is a billable POST in the chat group, a `.../models` path a GET.
 */
export function routesFromPaths(paths: readonly string[]): ProviderEndpoint[] {
  return paths.map((path) =>
    /\/models$/.test(path)
      ? { method: 'GET', path, group: 'models', usage: 'read' }
      : { method: 'POST', path, group: 'chat' },
  );
}

// ---- the request path ---------------------------------------------------------------------------

export type PathCheck = { ok: true; segments: string[] } | { ok: false; reason: string };

/** Characters a decoded segment may hold: enough for ids and model names (`ft:gpt-4o:org:x`). */
const SEGMENT = /^[A-Za-z0-9._~:@+=,-]+$/;

/**
 * Decodes a request path (no query) into segments once, refusing anything that could make the
 * provider see another path than the one matched: dot segments, encoded slashes, dots or
 * backslashes, double encoding, backslashes, empty segments (`//`, a trailing `/`) and control
 * characters.
 */
export function checkPath(rawPath: string): PathCheck {
  if (!rawPath.startsWith('/')) return { ok: false, reason: 'the path must start with "/"' };
  if (rawPath.includes('\\')) return { ok: false, reason: 'backslashes are not allowed in a path' };
  const encoded = /%(2f|2e|5c|25|00)/i.exec(rawPath);
  if (encoded) {
    const what: Record<string, string> = {
      '2f': 'an encoded "/"',
      '2e': 'an encoded "."',
      '5c': 'an encoded "\\"',
      '25': 'double encoding',
      '00': 'an encoded NUL',
    };
    return { ok: false, reason: `${what[encoded[1].toLowerCase()]} is not allowed in a path` };
  }
  const raw = rawPath.slice(1).split('/');
  const segments: string[] = [];
  for (const part of raw) {
    if (part === '') return { ok: false, reason: 'empty path segments ("//" or a trailing "/") are not allowed' };
    let decoded: string;
    try {
      decoded = decodeURIComponent(part);
    } catch {
      return { ok: false, reason: 'the path is not valid percent-encoding' };
    }
    if (decoded === '.' || decoded === '..') return { ok: false, reason: 'dot segments are not allowed in a path' };
    if (!SEGMENT.test(decoded)) return { ok: false, reason: `the path segment "${part.slice(0, 40)}" is not allowed` };
    segments.push(decoded);
  }
  return { ok: true, segments };
}

/** The path on the provider: the base path's segments, then the validated ones, each encoded. */
export function upstreamPath(segments: readonly string[]): string {
  let path = '';
  for (const segment of segments) path += '/' + encodeURIComponent(segment);
  return path || '/';
}

// ---- matching -------------------------------------------------------------------------------------

export type EndpointMatch =
  | { kind: 'match'; endpoint: ProviderEndpoint }
  | { kind: 'method-not-allowed'; allowed: EndpointMethod[] }
  | { kind: 'none' };

interface Compiled {
  endpoint: ProviderEndpoint;
  /** A literal segment, or null for a `{param}`. */
  parts: (string | null)[];
}

/** A plugin's routes, compiled once; matching compares segments, no regular expressions. */
export class EndpointTable {
  private readonly byLength = new Map<number, Compiled[]>();

  constructor(readonly routes: readonly ProviderEndpoint[]) {
    for (const endpoint of routes) {
      const parts = endpoint.path
        .split('/')
        .filter((p) => p !== '')
        .map((p) => (/^\{[A-Za-z_][A-Za-z0-9_]*\}$/.test(p) ? null : p));
      const list = this.byLength.get(parts.length) ?? [];
      list.push({ endpoint, parts });
      this.byLength.set(parts.length, list);
    }
  }

  /** Segments relative to the base path. A `{param}` never matches a segment starting with ".". */
  match(method: string, segments: readonly string[]): EndpointMatch {
    const candidates = this.byLength.get(segments.length);
    if (!candidates) return { kind: 'none' };
    let allowed: EndpointMethod[] | undefined;
    for (const { endpoint, parts } of candidates) {
      let same = true;
      for (let i = 0; i < parts.length; i++) {
        const part = parts[i];
        if (part === null ? segments[i].startsWith('.') : part !== segments[i]) {
          same = false;
          break;
        }
      }
      if (!same) continue;
      if (endpoint.method === method) return { kind: 'match', endpoint };
      (allowed ??= []).push(endpoint.method);
    }
    return allowed ? { kind: 'method-not-allowed', allowed } : { kind: 'none' };
  }
}

// ---- headers --------------------------------------------------------------------------------------

/**
 * Client headers every provider gets. Everything else is dropped unless the plugin lists it:
 * credentials (`authorization`, `x-api-key`, cookies) and account-scoping headers
 * (`OpenAI-Organization`, `OpenAI-Project`) above all — the stored key's account governs.
 */
export const COMMON_FORWARDED_HEADERS: readonly string[] = ['accept', 'content-type', 'user-agent', 'idempotency-key'];

/** SDK telemetry headers (`x-stainless-os`, …) carry nothing about the account and may pass. */
export const FORWARDED_HEADER_PREFIXES: readonly string[] = ['x-stainless-'];
