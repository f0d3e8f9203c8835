/**
 * `/login` and `/logout`: open redirects through `next`, login CSRF, malformed forms, logout that
 * must end the session, and throttling that locks out the attacked account but not the room.
 * Serial: good logins first, then wrong passwords, then the lockout.
 */
import type { Case, Ctx, Family, HttpResult } from '../types.js';

const formLogin = (c: Ctx, user: string, next: string, extra = '') =>
  `user=${encodeURIComponent(user)}&password=${encodeURIComponent(c.passwords[user]!)}&next=${next}${extra}`;
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
/** A refused form login shows the form again (with the reason), no session cookie. */
const loginPageAgain = (r: HttpResult) =>
  !/text\/html/.test(r.headers['content-type'] ?? '')
    ? 'not the login page'
    : /cm_session=[^;]/.test(r.headers['set-cookie'] ?? '')
      ? 'a session cookie was set'
      : null;

/** A form login of alice with this (already URL-encoded) `next` lands on a same-site path. */
const redirect = (label: string, next: string, location = '/alice/'): Case => ({
  name: `login next ${label}`,
  method: 'POST',
  path: '/login',
  headers: FORM,
  body: (c) => formLogin(c, 'alice', next),
  expect: { status: 303, location },
});

const redirects: Case[] = [
  redirect('same-site path is kept', '%2Falice%2Fapi%2Fqueue', '/alice/api/queue'),
  redirect('//evil.example', '%2F%2Fevil.example'),
  redirect('/%09/evil.example (tab)', '%2F%2509%2Fevil.example'),
  redirect('/<TAB>/evil.example (decoded tab)', '%2F%09%2Fevil.example'),
  redirect('/\\evil.example', '%2F%5Cevil.example'),
  redirect('\\\\evil.example', '%5C%5Cevil.example'),
  redirect('https://evil.example', 'https%3A%2F%2Fevil.example'),
  redirect('javascript:alert(1)', 'javascript%3Aalert(1)'),
  redirect('with a newline (header injection)', '%2Falice%2F%0D%0ASet-Cookie%3A%20x%3Dy'),
  redirect('with a bare LF', '%2F%0A%2Fevil.example'),
  redirect('/%2F%2Fevil.example (encoded slashes)', '%2F%252F%252Fevil.example'),
  redirect('/ followed by a space then //', '%2F%20%2F%2Fevil.example'),

  {
    name: 'login next //evil.example over JSON answers a same-site next',
    method: 'POST',
    path: '/login',
    body: (c) => ({ user: 'alice', password: c.passwords.alice, next: '//evil.example' }),
    expect: {
      status: 200,
      check: (r) =>
        (r.json as { next?: string })?.next === '/alice/'
          ? null
          : `next ${JSON.stringify((r.json as { next?: string })?.next)}`,
    },
  },
  {
    name: 'login page escapes next',
    method: 'GET',
    path: '/login?next=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E',
    expect: {
      status: 200,
      check: (r) => (r.body.includes('<script>alert(1)') ? 'next reflected unescaped' : null),
    },
  },
  {
    name: 'cross-site login POST (login CSRF)',
    method: 'POST',
    path: '/login',
    headers: { ...FORM, origin: 'https://evil.example' },
    body: (c) => formLogin(c, 'alice', '%2F'),
    expect: { status: 403, check: loginPageAgain },
  },
  {
    name: 'cross-site login POST with Origin null',
    method: 'POST',
    path: '/login',
    headers: { ...FORM, origin: 'null' },
    body: (c) => formLogin(c, 'alice', '%2F'),
    expect: { status: 403, check: loginPageAgain },
  },
  {
    name: 'cross-site login POST via Referer only',
    method: 'POST',
    path: '/login',
    headers: { ...FORM, 'sec-fetch-site': 'cross-site' },
    body: (c) => formLogin(c, 'alice', '%2F'),
    expect: { status: 403, check: loginPageAgain },
  },
  {
    name: 'cross-site JSON login POST',
    method: 'POST',
    path: '/login',
    headers: { origin: 'https://evil.example' },
    body: (c) => ({ user: 'alice', password: c.passwords.alice }),
    expect: { status: 403, code: 'CSRF_FAILED' },
  },
];

const malformed: Case[] = [
  {
    name: 'login: body not JSON',
    method: 'POST',
    path: '/login',
    headers: { 'content-type': 'application/json' },
    body: '{"user":',
    expect: { status: 400, code: 'INVALID_JSON' },
  },
  {
    name: 'login: missing password',
    method: 'POST',
    path: '/login',
    body: { user: 'alice' },
    expect: { status: 400, code: 'VALIDATION_FAILED' },
  },
  {
    name: 'login: user name of 10 KB',
    method: 'POST',
    path: '/login',
    body: { user: 'u'.repeat(10_000), password: 'x' },
    expect: { status: 400, code: 'VALIDATION_FAILED' },
  },
  {
    name: 'login: password of 2 KB',
    method: 'POST',
    path: '/login',
    body: { user: 'alice', password: 'p'.repeat(2000) },
    expect: { status: 400, code: 'VALIDATION_FAILED' },
  },
  {
    name: 'login: password is an object',
    method: 'POST',
    path: '/login',
    body: { user: 'alice', password: { $gt: '' } },
    expect: { status: 400, code: 'VALIDATION_FAILED' },
  },
  {
    name: 'login: form over 16 KB',
    method: 'POST',
    path: '/login',
    headers: FORM,
    body: `user=alice&password=${'p'.repeat(20_000)}`,
    expect: { status: 413, code: 'PAYLOAD_TOO_LARGE' },
  },
  {
    name: 'login: multipart',
    method: 'POST',
    path: '/login',
    headers: { 'content-type': 'multipart/form-data; boundary=x' },
    body: '--x--\r\n',
    expect: { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  },
  {
    name: 'login: text/plain',
    method: 'POST',
    path: '/login',
    headers: { 'content-type': 'text/plain' },
    body: 'user=alice',
    expect: { status: 400, code: 'VALIDATION_FAILED' },
  },
  {
    name: 'login: next of 3,000 characters',
    method: 'POST',
    path: '/login',
    body: (c) => ({ user: 'alice', password: c.passwords.alice, next: `/${'a'.repeat(3000)}` }),
    expect: { status: 400, code: 'VALIDATION_FAILED' },
  },
  {
    name: 'login: form with repeated fields',
    method: 'POST',
    path: '/login',
    headers: FORM,
    body: 'user=alice&user=bob&password=x&password=y',
    expect: {
      status: 401,
      check: (r) => (/text\/html/.test(r.headers['content-type'] ?? '') ? null : 'not the login form again'),
    },
  },
  {
    name: 'login: __proto__ field',
    method: 'POST',
    path: '/login',
    headers: { 'content-type': 'application/json' },
    body: '{"user":"alice","password":"x","__proto__":{"role":"instructor"}}',
    expect: { status: 400, code: 'INVALID_JSON' },
  },
  {
    name: 'login: wrong method PUT',
    method: 'PUT',
    path: '/login',
    body: {},
    expect: { status: 405, code: 'METHOD_NOT_ALLOWED' },
  },
];

/** Logout ends the session: the same cookie is refused afterwards (erin, a throwaway account). */
const logout: Case[] = [
  {
    name: 'logout: POST with a session',
    method: 'POST',
    path: '/logout',
    prepare: async (c) => {
      c.vars.erin = await c.freshSession('erin');
    },
    headers: (c) => ({ cookie: c.vars.erin! }),
    expect: { status: 200 },
  },
  {
    name: 'logout: the old cookie no longer works',
    method: 'GET',
    path: '/erin/api/queue',
    headers: (c) => ({ cookie: c.vars.erin! }),
    expect: { status: 401, code: 'UNAUTHORIZED' },
  },
  { name: 'logout: without a session', method: 'POST', path: '/logout', expect: { status: 200 } },
];

const retryAfter = (r: HttpResult) => (Number(r.headers['retry-after']) > 0 ? null : 'no Retry-After');

/** Wrong passwords for `victim` until it locks; the rest of the room still signs in. */
const throttle: Case[] = [
  ...Array.from({ length: 5 }, (_, i): Case => ({
    name: `throttle: wrong password for victim #${i + 1}`,
    method: 'POST',
    path: '/login',
    body: { user: 'victim', password: `wrong-${i}` },
    expect: { status: 401, code: 'INVALID_CREDENTIALS' },
  })),
  {
    name: 'throttle: victim is now locked',
    method: 'POST',
    path: '/login',
    body: { user: 'victim', password: 'wrong-6' },
    expect: { status: 429, code: 'LOGIN_THROTTLED', check: retryAfter },
  },
  {
    name: 'throttle: locked also with the right password',
    method: 'POST',
    path: '/login',
    body: (c) => ({ user: 'victim', password: c.passwords.victim }),
    expect: { status: 429, code: 'LOGIN_THROTTLED' },
  },
  {
    name: 'throttle: Basic for victim is locked too',
    method: 'GET',
    path: '/victim/api/queue',
    headers: { authorization: `Basic ${Buffer.from('victim:nope').toString('base64')}` },
    expect: { status: 429, code: 'LOGIN_THROTTLED' },
  },
  {
    name: 'throttle: a spoofed X-Forwarded-For does not escape it',
    method: 'POST',
    path: '/login',
    headers: { 'x-forwarded-for': '203.0.113.9' },
    body: { user: 'victim', password: 'wrong-7' },
    expect: { status: 429, code: 'LOGIN_THROTTLED' },
  },
  {
    name: 'throttle: upper-case VICTIM is the same account',
    method: 'POST',
    path: '/login',
    body: { user: 'VICTIM', password: 'wrong-8' },
    expect: { status: 429, code: 'LOGIN_THROTTLED' },
  },
  {
    name: 'throttle: another participant at the same address still signs in',
    method: 'POST',
    path: '/login',
    body: (c) => ({ user: 'bob', password: c.passwords.bob }),
    expect: { status: 200 },
  },
  {
    name: 'throttle: a signed-in participant is unaffected',
    as: 'alice',
    method: 'GET',
    path: '/alice/api/queue',
    expect: { status: 200 },
  },
];

export const login: Family = {
  family: 'login and logout',
  cases: [...redirects, ...malformed, ...logout, ...throttle],
  serial: true,
};
