/**
 * Below the routes: raw HTTP the parser and server must survive (huge or malformed headers, lying
 * lengths, smuggling attempts, slow senders). Node's HTTP layer answers some of these itself,
 * without our JSON body; the status is what is checked then.
 */
import type { Case, Ctx, Family } from '../types.js';

const req = (c: Ctx, lines: string[], body = '') =>
  `${lines.join('\r\n')}\r\nHost: ${c.host}\r\nConnection: close\r\n\r\n${body}`;

export const transport: Family = {
  family: 'raw HTTP',
  cases: [
    {
      kind: 'raw',
      name: 'request line that is not HTTP',
      steps: ['GARBAGE\r\n\r\n'],
      expect: { status: 400 },
    },
    {
      kind: 'raw',
      name: 'unknown method',
      steps: (c) => [req(c, ['FOO /health HTTP/1.1'])],
      expect: { status: 400 },
    },
    {
      kind: 'raw',
      name: 'NUL in the request target',
      steps: (c) => [req(c, ['GET /health\u0000 HTTP/1.1'])],
      expect: { status: 400 },
    },
    {
      kind: 'raw',
      name: 'header name with a space',
      steps: (c) => [req(c, ['GET /health HTTP/1.1', 'Bad Header: x'])],
      expect: { status: 400 },
    },
    {
      kind: 'raw',
      name: 'header value with a bare CR',
      steps: (c) => [req(c, ['GET /health HTTP/1.1', 'X-A: a\rb'])],
      expect: { status: 400 },
    },
    {
      kind: 'raw',
      name: 'one 64 KB header',
      steps: (c) => [req(c, ['GET /health HTTP/1.1', `X-Big: ${'h'.repeat(64 * 1024)}`])],
      expect: { status: 431 },
    },
    {
      kind: 'raw',
      name: '100 small headers',
      steps: (c) => [
        req(c, ['GET /health HTTP/1.1', ...Array.from({ length: 100 }, (_, i) => `X-H${i}: v`)]),
      ],
      expect: { status: 200 },
    },
    {
      kind: 'raw',
      name: 'request target of 20 KB',
      steps: (c) => [req(c, [`GET /alice/${'p'.repeat(20 * 1024)} HTTP/1.1`])],
      expect: { status: 431 },
    },
    {
      kind: 'raw',
      name: 'Content-Length and Transfer-Encoding together (smuggling)',
      steps: (c) => [
        req(
          c,
          [
            'POST /login HTTP/1.1',
            'Content-Type: application/json',
            'Content-Length: 4',
            'Transfer-Encoding: chunked',
          ],
          '0\r\n\r\n',
        ),
      ],
      expect: { status: 400 },
    },
    {
      kind: 'raw',
      name: 'two different Content-Lengths',
      steps: (c) => [
        req(
          c,
          [
            'POST /login HTTP/1.1',
            'Content-Type: application/json',
            'Content-Length: 2',
            'Content-Length: 3',
          ],
          '{}',
        ),
      ],
      expect: { status: 400 },
    },
    {
      kind: 'raw',
      name: 'negative Content-Length',
      steps: (c) => [
        req(c, ['POST /login HTTP/1.1', 'Content-Type: application/json', 'Content-Length: -1'], '{}'),
      ],
      expect: { status: 400 },
    },
    {
      kind: 'raw',
      name: 'Content-Length not a number',
      steps: (c) => [
        req(c, ['POST /login HTTP/1.1', 'Content-Type: application/json', 'Content-Length: abc'], '{}'),
      ],
      expect: { status: 400 },
    },
    {
      kind: 'raw',
      name: 'bad chunk size',
      steps: (c) => [
        req(
          c,
          ['POST /login HTTP/1.1', 'Content-Type: application/json', 'Transfer-Encoding: chunked'],
          'zz\r\n{}\r\n0\r\n\r\n',
        ),
      ],
      expect: { status: 400 },
    },
    {
      kind: 'raw',
      name: 'Transfer-Encoding: chunked, identity',
      steps: (c) => [
        req(
          c,
          ['POST /login HTTP/1.1', 'Content-Type: application/json', 'Transfer-Encoding: chunked, identity'],
          '2\r\n{}\r\n0\r\n\r\n',
        ),
      ],
      expect: { status: 400 },
    },
    {
      kind: 'raw',
      name: 'chunked body over BODY_LIMIT',
      steps: (c) => [
        req(c, [
          'POST /api/v1/jobs HTTP/1.1',
          `Authorization: Bearer ${c.tokens.api}`,
          'Content-Type: application/json',
          'Transfer-Encoding: chunked',
        ]),
        ...Array.from({ length: 40 }, () => `10000\r\n${'x'.repeat(0x10000)}\r\n`),
        '0\r\n\r\n',
      ],
      expect: { status: 413, code: 'PAYLOAD_TOO_LARGE' },
    },
    {
      kind: 'raw',
      name: 'Content-Length says 10 GB',
      steps: (c) => [
        req(
          c,
          [
            'POST /api/v1/jobs HTTP/1.1',
            `Authorization: Bearer ${c.tokens.api}`,
            'Content-Type: application/json',
            'Content-Length: 10737418240',
          ],
          '{"user":',
        ),
      ],
      expect: { status: 413, code: 'PAYLOAD_TOO_LARGE' },
    },
    {
      kind: 'raw',
      name: 'absolute-form request target',
      steps: (c) => [req(c, ['GET http://evil.example/health HTTP/1.1'])],
      expect: { status: 200 },
    },
    {
      kind: 'raw',
      name: 'asterisk request target',
      steps: (c) => [req(c, ['OPTIONS * HTTP/1.1'])],
      expect: { status: 404, code: 'NOT_FOUND' },
    },
    {
      kind: 'raw',
      name: 'HTTP/1.0 without Host',
      steps: ['GET /health HTTP/1.0\r\n\r\n'],
      expect: { status: 200 },
    },
    {
      kind: 'raw',
      name: 'HTTP/2 preface on the HTTP/1.1 port',
      steps: ['PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'],
      expect: { status: 400 },
    },
    {
      // HEADERS_TIMEOUT_MS=3000 in this run; Node checks it every 30 s: closed 3–33 s after the start.
      kind: 'raw',
      name: 'headers that never end (slowloris)',
      steps: (c) => [
        `GET /health HTTP/1.1\r\nHost: ${c.host}\r\n`,
        ...Array.from({ length: 100 }, (_, i) => [`X-Slow-${i}: 1\r\n`, { pause: 500 }]).flat(),
      ],
      expect: { closed: true, withinMs: 44_000 },
      timeoutMs: 52_000,
    },
    {
      kind: 'raw',
      name: 'request cut after the headers',
      steps: (c) => [
        req(c, ['POST /login HTTP/1.1', 'Content-Type: application/json', 'Content-Length: 50']),
        'end',
      ],
      expect: { status: 400 },
    },
    {
      kind: 'raw',
      name: 'a WebSocket upgrade with a bad key',
      steps: (c) => [
        req(c, [
          'GET /alice/ws HTTP/1.1',
          'Upgrade: websocket',
          'Connection: Upgrade',
          'Sec-WebSocket-Version: 13',
          'Sec-WebSocket-Key: short',
          `Cookie: ${c.headers('alice').cookie}`,
        ]),
      ],
      expect: { status: 400 },
    },
    {
      kind: 'raw',
      name: 'a WebSocket upgrade with version 99',
      steps: (c) => [
        req(c, [
          'GET /alice/ws HTTP/1.1',
          'Upgrade: websocket',
          'Connection: Upgrade',
          'Sec-WebSocket-Version: 99',
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
          `Cookie: ${c.headers('alice').cookie}`,
        ]),
      ],
      expect: { status: 400 },
    },
  ] satisfies Case[],
};
