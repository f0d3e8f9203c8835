import { signInLink, type ParticipantEntry } from './login-material.js';
import { escapeHtml as esc, qrSvg } from './qr-code.js';

/**
 * Login cards: one printable HTML page (no script, no external resource), one card per
 * participant with their name, room, password (only while it is the current one), a QR code of
 * their sign-in link and the link itself. Eight cards per A4 page (2 × 4, cut along the dashed
 * lines); every room starts on a new page, so a room's cards can be handed out as one pile.
 */
export const CARDS_PER_PAGE = 8;

/** The page's CSP: its own inline styles only. */
export const CARDS_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'";

export interface CardsOptions {
  /** PUBLIC_URL (or its default): where the links point. */
  baseUrl: string;
  /** Shown on every card, e.g. the workshop's name. */
  title?: string;
  /** Participants whose link is not known here, listed in the screen-only header. */
  missingLinks?: string[];
}

const STYLE = `
@page { size: A4 portrait; margin: 10mm; }
* { box-sizing: border-box; }
body { margin: 0; font: 11pt/1.35 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #111; }
.screen { max-width: 190mm; margin: 1rem auto; padding: .75rem 1rem; background: #eef2ff; border-radius: 6px; }
.screen p { margin: .25rem 0; }
.room { display: grid; grid-template-columns: repeat(2, 95mm); grid-auto-rows: 69mm; justify-content: center; }
.room + .room { break-before: page; page-break-before: always; }
.card { border: 1px dashed #999; padding: 4mm 5mm; display: grid; grid-template-columns: 1fr 34mm;
  grid-template-rows: auto 1fr auto; grid-template-areas: "head qr" "how how" "url url"; column-gap: 3mm;
  break-inside: avoid; page-break-inside: avoid; overflow: hidden; }
.card:nth-child(${CARDS_PER_PAGE}n) { break-after: page; page-break-after: always; }
.head { grid-area: head; min-width: 0; }
.who { font-size: 17pt; font-weight: 700; margin: 0; word-break: break-all; }
.meta { color: #555; font-size: 9pt; margin: 0 0 2mm; }
.pw { margin: 2mm 0; }
.pw code { font: 11pt/1.2 ui-monospace, "DejaVu Sans Mono", monospace; letter-spacing: .5px; word-break: break-all; }
.url { grid-area: url; font: 8pt/1.25 ui-monospace, "DejaVu Sans Mono", monospace; word-break: break-all; color: #111; margin: 0; }
.how { grid-area: how; font-size: 8.5pt; color: #333; margin: 1.5mm 0 1mm; align-self: end; }
.pw.none { font-size: 8.5pt; color: #333; }
.qr, .nolink { grid-area: qr; width: 34mm; height: 34mm; }
.nolink { border: 1px solid #c00; color: #c00; font-size: 8pt; padding: 2mm; }
@media print { .screen { display: none; } }
`;

/** The card page for these participants (sorted by room, then name). */
export function renderLoginCards(entries: readonly ParticipantEntry[], opts: CardsOptions): string {
  const rooms = new Map<string, ParticipantEntry[]>();
  const sorted = [...entries].sort((a, b) => cmp(a.room, b.room) || cmp(a.user, b.user));
  for (const e of sorted) rooms.set(e.room, [...(rooms.get(e.room) ?? []), e]);
  const title = opts.title ?? 'ComfyUI workshop';
  const sections = [...rooms.values()]
    .map(
      (cards) => `<section class="room">${cards.map((e) => card(e, opts.baseUrl, title)).join('')}</section>`,
    )
    .join('\n');
  const missing = opts.missingLinks ?? [];
  const warning =
    missing.length > 0
      ? `<p><b>No link known here for:</b> ${esc(missing.join(', '))}. Make new ones with <code>comfy-multi users links --regenerate ${esc(missing.join(' '))}</code>.</p>`
      : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>Login cards – ${esc(title)}</title><style>${STYLE}</style></head>
<body>
<div class="screen"><p><b>${entries.length} login cards</b> for ${esc(opts.baseUrl)} — print this page (A4, ${CARDS_PER_PAGE} cards a page, each room on new pages) and cut along the dashed lines.</p>
<p>Each card signs its participant in. Keep them private until you hand them out; a lost card is revoked with <code>comfy-multi users links --regenerate NAME</code>.</p>${warning}</div>
${sections}
</body></html>
`;
}

function card(e: ParticipantEntry, baseUrl: string, title: string): string {
  const link = e.token ? signInLink(baseUrl, e.token) : null;
  const qr = link
    ? qrSvg(link, `QR code: sign-in link of ${e.user}`)
    : '<div class="nolink">No sign-in link known: ask the instructor.</div>';
  const password = e.password
    ? `<p class="pw">Password: <code>${esc(e.password)}</code></p>`
    : '<p class="pw none">Password: not shown (sign in with the code or the link).</p>';
  const start = `${baseUrl.replace(/\/+$/, '')}/`;
  const how = link
    ? `Open this address in your browser (or scan the code) to sign in${e.password ? `, or sign in at ${esc(start)} with your name and password` : ''}:`
    : `Sign in at ${esc(start)} with your name and password.`;
  return `<article class="card" data-user="${esc(e.user)}"><div class="head">
<p class="meta">${esc(title)}${e.room ? ` · ${esc(e.room)}` : ''}</p>
<p class="who">${esc(e.user)}</p>
${password}
</div>${qr}
<p class="how">${how}</p>
${link ? `<p class="url">${esc(link)}</p>` : ''}</article>`;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
