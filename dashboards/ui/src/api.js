// JSON API client: same-origin requests with the session cookie.

/** Raised for non-2xx answers; `status` and the API's message. */
export class ApiError extends Error {
  constructor(status, message, parameter) {
    super(message);
    this.status = status;
    this.parameter = parameter;
  }
}

let onUnauthenticated = () => {};
/** Called when the API answers 401 (the session expired). */
export function setUnauthenticatedHandler(f) {
  onUnauthenticated = f;
}

/** GET /api/v1/<path>?<params>; empty parameters are left out. */
export async function get(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const qs = q.toString();
  return request('GET', `/api/v1/${path}${qs ? '?' + qs : ''}`);
}

/** The URL of /api/v1/<path>?<params> (for links: downloads). */
export function url(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const qs = q.toString();
  return `/api/v1/${path}${qs ? '?' + qs : ''}`;
}

/** DELETE /api/v1/<path>. */
export async function del(path) {
  return request('DELETE', `/api/v1/${path}`);
}

/** PUT a JSON body. */
export async function put(path, body) {
  return request('PUT', `/api/v1/${path}`, body);
}

/** POST a JSON body. */
export async function post(path, body) {
  return request('POST', `/api/v1/${path}`, body);
}

async function request(method, url, body) {
  const r = await fetch(url, {
    method,
    credentials: 'same-origin',
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  let data = null;
  try {
    data = await r.json();
  } catch {
    data = null;
  }
  if (!r.ok) {
    if (r.status === 401 && !url.endsWith('/login')) onUnauthenticated();
    throw new ApiError(r.status, data?.error ?? r.statusText, data?.parameter);
  }
  return data;
}
