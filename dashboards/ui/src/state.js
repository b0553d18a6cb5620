// The URL hash holds the page and its parameters (#/alerts?range=24h&kind=port_scan), so
// every view is a link and reloads keep it.

/** Parsed hash: { page, id, params }. */
export function current() {
  const h = location.hash.replace(/^#\/?/, '');
  const [path, qs] = h.split('?');
  const [page, ...rest] = (path || 'overview').split('/');
  return { page: page || 'overview', id: rest.length ? decodeURIComponent(rest.join('/')) : null, params: Object.fromEntries(new URLSearchParams(qs || '')) };
}

/** Builds a hash link. */
export function link(page, params = {}, id = null) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const qs = q.toString();
  return `#/${page}${id ? '/' + encodeURIComponent(id) : ''}${qs ? '?' + qs : ''}`;
}

/** Changes some parameters of the current page (null removes). */
export function update(changes, { page } = {}) {
  const c = current();
  const params = { ...c.params, ...changes };
  for (const k of Object.keys(params)) if (params[k] === null || params[k] === '') delete params[k];
  location.hash = link(page ?? c.page, params, page ? null : c.id);
}

/** Parameters kept when moving between pages: the time range and the line. */
export function globalParams(params) {
  const out = {};
  for (const k of ['range', 'from', 'to', 'line']) if (params[k]) out[k] = params[k];
  return out;
}

export const RANGES = [
  ['15m', 15 * 60e3],
  ['1h', 3600e3],
  ['6h', 6 * 3600e3],
  ['24h', 86400e3],
  ['7d', 7 * 86400e3],
  ['30d', 30 * 86400e3],
];

/**
 * The time range to query: explicit from/to, "all" (the stored extent from /meta), or a
 * preset ending now (live: polled).
 */
export function timeRange(params, meta) {
  if (params.from && params.to) return { from: Number(params.from) || params.from, to: Number(params.to) || params.to, live: false };
  const r = params.range || '1h';
  if (r === 'all') {
    const e = meta?.extent;
    if (e) return { from: e.from, to: e.to, live: false };
    return { from: Date.now() - 3600e3, to: Date.now(), live: false };
  }
  const span = (RANGES.find(([k]) => k === r) ?? RANGES[1])[1];
  const to = Date.now();
  return { from: to - span, to, live: true };
}

/** Who is logged in: name, role (viewer, analyst, admin) and lines (null: every line). */
export const me = { name: '', role: 'viewer', lines: null };

const RANK = { viewer: 0, analyst: 1, admin: 2 };

/** Whether the logged-in principal's role is at least `role` (the server checks too). */
export const can = (role) => (RANK[me.role] ?? 0) >= RANK[role];
