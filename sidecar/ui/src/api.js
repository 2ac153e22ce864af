// The sidecar's REST API as the page uses it: the admin key as a Bearer header, JSON both ways,
// the error envelope ({error, message, code, …}) as an ApiError, and the rate limit respected.
//
// The limiter counts every refused request as a violation, and enough violations lock the
// address out (then ban it), so the page must not keep knocking: after a 429 a route is quiet
// until `retry_after`, and the number of requests the route took in the last window becomes the
// page's own budget for it from then on.

const KEY = 'broker-auth.admin-key';
const WINDOW_MS = 60_000;

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
    this.error = this.body.error || `HTTP_${status}`;
  }
}

/** A 429 answered by the page itself: the route is resting until `until` (ms since epoch). */
export class RateLimited extends ApiError {
  constructor(route, retryAfter, fromServer) {
    super(429, {
      error: 'RATE_LIMIT_EXCEEDED',
      retry_after: retryAfter,
      message: `${route}: rate limited, retry in ${retryAfter} s`,
    });
    this.route = route;
    this.retryAfter = retryAfter;
    this.fromServer = fromServer;
  }
}

export const adminKey = {
  get: () => sessionStorage.getItem(KEY) || '',
  set: (k) => sessionStorage.setItem(KEY, k),
  clear: () => sessionStorage.removeItem(KEY),
};

// Per route: when it may be called again, the budget learned from a 429, the recent calls.
const routes = new Map();

function pacing(route) {
  if (!routes.has(route)) routes.set(route, { until: 0, budget: Infinity, sent: [] });
  return routes.get(route);
}

/** Seconds until `route` may be called, 0 when now. */
function waitFor(p, now) {
  p.sent = p.sent.filter((t) => now - t < WINDOW_MS);
  let until = p.until;
  if (p.sent.length >= p.budget) until = Math.max(until, p.sent[0] + WINDOW_MS);
  return Math.max(0, Math.ceil((until - now) / 1000));
}

function retryAfterOf(res, body) {
  const n = Number((body && body.retry_after) ?? res.headers.get('retry-after'));
  return Number.isFinite(n) && n > 0 ? n : 1;
}

/**
 * Call `method path` with an optional JSON body. `route` names the rate-limited route (a path
 * with ids in it shares one budget). Resolves to {status, body}; rejects with an ApiError.
 */
export async function call(method, path, body, route = `${method} ${path.split('?')[0]}`) {
  const p = pacing(route);
  const wait = waitFor(p, Date.now());
  if (wait > 0) throw new RateLimited(route, wait, false);
  p.sent.push(Date.now());
  const headers = { authorization: `Bearer ${adminKey.get()}`, accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
    credentials: 'omit',
  });
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = { message: text.slice(0, 200) };
  }
  if (res.status === 429) {
    const retry = retryAfterOf(res, json);
    p.until = Date.now() + retry * 1000;
    p.budget = Math.max(1, p.sent.length - 1);
    throw new RateLimited(route, retry, true);
  }
  if (!res.ok) throw new ApiError(res.status, json);
  return { status: res.status, body: json };
}
