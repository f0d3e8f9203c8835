import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { renderLoginCards } from './login-cards.js';
import { signInLink, type ParticipantEntry } from './login-material.js';
import { qrMatrix, qrSvg } from './qr-code.js';
import { decodeSvgQr } from '../../test/support/qr-decode.js';

const TOKEN = `user001.${'Ab-_'.repeat(10)}xyz`;

function entry(user: string, extra: Partial<ParticipantEntry> = {}): ParticipantEntry {
  return {
    user,
    room: '',
    password: null,
    passwordVersion: null,
    token: `${user}.${'k'.repeat(43)}`,
    ...extra,
  };
}

describe('QR codes', () => {
  it('encode a sign-in link that an independent decoder reads back exactly', () => {
    const link = signInLink('https://workshop.example.org', TOKEN);
    expect(decodeSvgQr(qrSvg(link, 'x'))).toBe(link);
  });

  it('stay small enough to scan from a card: version ≤ 10 for links up to 200 characters', () => {
    const long = `https://${'a'.repeat(120)}.example.org/login/t/${TOKEN}`.slice(0, 200);
    const n = qrMatrix(long).length;
    expect((n - 17) / 4).toBeLessThanOrEqual(10);
  });

  it('round-trip any printable-ASCII URL (property)', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[a-z0-9.-]{1,40}$/),
        fc.stringMatching(/^[A-Za-z0-9_-]{1,60}$/),
        (host, path) => {
          const url = `https://${host}/login/t/${path}`;
          expect(decodeSvgQr(qrSvg(url, 'x'), 3)).toBe(url);
        },
      ),
      { numRuns: 40 },
    );
  });
});

describe('login cards page', () => {
  it('has one card per participant, each with an SVG QR code of its own link', () => {
    const entries = [entry('user001'), entry('user002', { password: 'Pw2Pw2Pw2' }), entry('user003')];
    const html = renderLoginCards(entries, { baseUrl: 'https://w.example' });
    const cards = [...html.matchAll(/<article class="card" data-user="([^"]+)">([\s\S]*?)<\/article>/g)];
    expect(cards.map((c) => c[1])).toEqual(['user001', 'user002', 'user003']);
    for (const [, user, body] of cards) {
      const svg = /<svg class="qr"[\s\S]*?<\/svg>/.exec(body!)![0];
      const link = `https://w.example/login/t/${user}.${'k'.repeat(43)}`;
      expect(decodeSvgQr(svg)).toBe(link);
      expect(body).toContain(link);
    }
    // A password only where one is known; the others point to the link.
    expect(cards[1]![2]).toContain('<code>Pw2Pw2Pw2</code>');
    expect(cards[0]![2]).not.toContain('<code>');
    expect(html).toContain('@page');
  });

  it('starts every room on a new page, rooms and names sorted', () => {
    const html = renderLoginCards(
      [entry('b1', { room: 'Room B' }), entry('a2', { room: 'Room A' }), entry('a1', { room: 'Room A' })],
      { baseUrl: 'https://w.example' },
    );
    const sections = html.split('<section class="room">').slice(1);
    expect(sections).toHaveLength(2);
    expect([...sections[0]!.matchAll(/data-user="([^"]+)"/g)].map((m) => m[1])).toEqual(['a1', 'a2']);
    expect(sections[1]).toContain('data-user="b1"');
    expect(html).toMatch(/\.room \+ \.room \{[^}]*break-before: page/);
  });

  it('escapes everything it shows and needs no script', () => {
    const html = renderLoginCards([entry('u1', { room: '<script>x</script>', password: '"&<' })], {
      baseUrl: 'https://w.example',
      title: '<b>T</b>',
    });
    expect(html).not.toContain('<script');
    expect(html).not.toContain('<b>T</b>');
    expect(html).toContain('&#60;script&#62;');
  });

  it('says when a participant has no known link instead of printing a dead code', () => {
    const html = renderLoginCards([entry('u1', { token: null })], {
      baseUrl: 'https://w.example',
      missingLinks: ['u1'],
    });
    expect(html).not.toContain('<svg');
    expect(html).toContain('users links --regenerate u1');
  });
});
