// A tiny HTTP client over global fetch with a cookie jar, for driving the framework adapters
// over real HTTP. One jar is one browser: it keeps the cookies the server sets (by name; path
// and domain are ignored, everything is on one loopback origin), drops a cookie when the server
// expires it (Max-Age <= 0 or Expires in the past), and sends the rest back on every request.
// Stored cookies never expire on their own: a jar behaves like a client replaying an old cookie.
// Redirects are not followed.
//
// Below the jar: serving an app on loopback, and what the adapter tests ask of their apps, whose
// GET /count adds one to the session's `views` and answers JSON with it, and whose errors (from
// the store) become a 500 with `{ error, code, retryable }`.
import { expect } from 'chai';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { sleep } from './wait';

export interface RequestOptions {
  method?: string;
  /** A string is sent as is; an object as application/x-www-form-urlencoded. */
  body?: string | Record<string, string>;
  headers?: Record<string, string>;
  /** false: send the jar's cookies but do not store what the response sets. Default true. */
  save?: boolean;
  /** Abort after this many ms (the request then rejects). Default 15 000. */
  timeoutMs?: number;
}

export interface HttpResponse {
  status: number;
  headers: Headers;
  text: string;
  /** The raw Set-Cookie header lines. */
  setCookies: string[];
  /** The body parsed as JSON (throws when it is not JSON). */
  json<T = any>(): T;
}

/** One parsed Set-Cookie line. */
export interface SetCookie {
  name: string;
  value: string;
  attributes: Record<string, string | true>;
  /** True when the line deletes the cookie (Max-Age <= 0 or an Expires in the past). */
  expired: boolean;
}

export function parseSetCookie(line: string): SetCookie {
  const [pair = '', ...rest] = line.split(';');
  const eq = pair.indexOf('=');
  const name = (eq < 0 ? pair : pair.slice(0, eq)).trim();
  const value = eq < 0 ? '' : pair.slice(eq + 1).trim();
  const attributes: Record<string, string | true> = {};
  for (const part of rest) {
    const i = part.indexOf('=');
    const key = (i < 0 ? part : part.slice(0, i)).trim().toLowerCase();
    if (key) attributes[key] = i < 0 ? true : part.slice(i + 1).trim();
  }
  let expired = false;
  const maxAge = attributes['max-age'];
  if (typeof maxAge === 'string' && Number(maxAge) <= 0) expired = true;
  const expires = attributes['expires'];
  if (maxAge === undefined && typeof expires === 'string') {
    const at = Date.parse(expires);
    if (Number.isFinite(at) && at <= Date.now()) expired = true;
  }
  return { name, value, attributes, expired };
}

export class CookieJar {
  /** name -> raw value (as the server sent it, still encoded). */
  readonly cookies = new Map<string, string>();

  constructor(readonly baseUrl: string) {}

  /** A cookie's raw value. */
  cookie(name: string): string | undefined {
    return this.cookies.get(name);
  }

  /** Sets a cookie's raw value (sent as is), e.g. to tamper with it. */
  setCookie(name: string, value: string): void {
    this.cookies.set(name, value);
  }

  deleteCookie(name: string): void {
    this.cookies.delete(name);
  }

  clear(): void {
    this.cookies.clear();
  }

  /** A new jar with the same cookies (a second tab, or a replay of this moment). */
  copy(): CookieJar {
    const jar = new CookieJar(this.baseUrl);
    for (const [k, v] of this.cookies) jar.setCookie(k, v);
    return jar;
  }

  /** The Cookie request header, or undefined when the jar is empty. */
  header(): string | undefined {
    if (this.cookies.size === 0) return undefined;
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  /** Stores (or deletes) what Set-Cookie lines say. */
  absorb(lines: string[]): void {
    for (const line of lines) {
      const c = parseSetCookie(line);
      if (!c.name) continue;
      if (c.expired || c.value === '') this.cookies.delete(c.name);
      else this.cookies.set(c.name, c.value);
    }
  }

  /**
   * GET `path` and keep every cookie it sets, even one whose Expires already lies in the past.
   * For short cookies: Expires has whole seconds, so a 1 s cookie can arrive already expired on
   * a loaded machine; a client replaying a stale cookie is what these tests need.
   */
  async visitKeepingCookies(path: string): Promise<HttpResponse> {
    const res = await this.request(path, { save: false });
    expect(res.status, res.text).to.equal(200);
    this.absorb(res.setCookies.map((line) => line.split(';')[0]!));
    return res;
  }

  async request(path: string, options: RequestOptions = {}): Promise<HttpResponse> {
    const headers: Record<string, string> = { ...options.headers };
    const cookie = this.header();
    if (cookie !== undefined && headers.cookie === undefined) headers.cookie = cookie;
    let body: string | undefined;
    if (typeof options.body === 'string') {
      body = options.body;
    } else if (options.body) {
      body = new URLSearchParams(options.body).toString();
      headers['content-type'] ??= 'application/x-www-form-urlencoded';
    }
    const res = await fetch(new URL(path, this.baseUrl), {
      method: options.method ?? (body === undefined ? 'GET' : 'POST'),
      headers,
      body,
      redirect: 'manual',
      signal: AbortSignal.timeout(options.timeoutMs ?? 15_000),
    });
    const text = await res.text();
    const setCookies = res.headers.getSetCookie();
    if (options.save !== false) this.absorb(setCookies);
    return {
      status: res.status,
      headers: res.headers,
      text,
      setCookies,
      json<T = any>(): T {
        try {
          return JSON.parse(text) as T;
        } catch {
          throw new Error(`expected JSON, got HTTP ${res.status}: ${text.slice(0, 300)}`);
        }
      },
    };
  }

  get(path: string, options: RequestOptions = {}): Promise<HttpResponse> {
    return this.request(path, { ...options, method: 'GET' });
  }

  post(path: string, options: RequestOptions = {}): Promise<HttpResponse> {
    return this.request(path, { ...options, method: 'POST' });
  }
}

/** Listens on 127.0.0.1 on a free port; resolves to the base URL. */
export async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return `http://127.0.0.1:${port}/`;
}

/** Closes a server and every connection it still holds (keep-alive sockets included). */
export async function closeServer(server: Server | undefined): Promise<void> {
  if (!server || !server.listening) return;
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  await closed;
}

/** GET `path` with the jar: expects 200 and resolves to the JSON body. */
export async function okJson<T = any>(jar: CookieJar, path: string): Promise<T> {
  const res = await jar.get(path);
  expect(res.status, `GET ${path}: ${res.text.slice(0, 200)}`).to.equal(200);
  return res.json<T>();
}

/** The codes of a retryable SessionPgsqlError that an outage gives. */
export const OUTAGE_CODES = [
  'SPG_NO_SERVER',
  'SPG_CONNECT_FAILED',
  'SPG_CONNECT_TIMEOUT',
  'SPG_CONNECTION_LOST',
  'SPG_TIMEOUT',
];

/** Expects a 5xx whose JSON body carries a retryable outage code (`{ code, retryable }`). */
export function expectOutageError(res: HttpResponse, what: string): void {
  expect(res.status, `${what}: ${res.text.slice(0, 300)}`).to.be.within(500, 599);
  const body = res.json();
  expect(OUTAGE_CODES, `${what}: code ${body.code}`).to.include(body.code);
  expect(body.retryable, `${what}: retryable`).to.equal(true);
}

/**
 * Four GET /count while the app's only server is down, 250 ms apart: each fails with a 5xx
 * carrying a retryable outage code, never a fresh session (a silent logout). save: false keeps
 * the jar's cookie for the session written before the outage.
 */
export async function expectOutageErrors(jar: CookieJar): Promise<void> {
  for (let i = 0; i < 4; i++) {
    const res = await jar.get('/count', { save: false, timeoutMs: 10_000 });
    expectOutageError(res, `request ${i} during the outage`);
    await sleep(250);
  }
}

/**
 * GET `path` every 200 ms, keeping the jar's cookie (save: false), until `back(response)` holds
 * or 15 s have passed; resolves to the last response.
 */
export async function pollUntilBack(
  jar: CookieJar,
  path: string,
  back: (res: HttpResponse) => boolean,
): Promise<HttpResponse | undefined> {
  const started = Date.now();
  let last: HttpResponse | undefined;
  while (Date.now() - started < 15_000) {
    last = await jar.get(path, { save: false, timeoutMs: 10_000 });
    if (back(last)) break;
    await sleep(200);
  }
  return last;
}
