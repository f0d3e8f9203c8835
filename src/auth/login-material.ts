import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Account, JobStore } from '../store/types.js';
import { verifyPassword } from './passwords.js';
import { SignInTokens } from './sign-in-tokens.js';

/**
 * The participants file, `DATA_DIR/participants.txt` (mode 0600): the one place on disk that holds
 * participants' login material in clear text — their password (only while it is the one set last)
 * and their sign-in link. The store holds only hashes, so this file is what login cards are built
 * from. Every `comfy-multi users …` command that changes material rebuilds it by merging: a line
 * is never dropped while its account exists, a password stays until it stops being the current one
 * (its password version is recorded beside it), a link stays until it is regenerated or revoked.
 * Rooms (for one page of cards per room) live only here.
 */
export const PARTICIPANTS_FILE = 'participants.txt';

export function participantsFilePath(dataDir: string): string {
  return join(dataDir, PARTICIPANTS_FILE);
}

export interface ParticipantEntry {
  user: string;
  /** Room or group for the cards; '' when none. */
  room: string;
  /** The password in clear text while it is the current one; null when not known. */
  password: string | null;
  /** The account's passwordVersion that `password` belongs to; null when not known (old files). */
  passwordVersion: number | null;
  /** The sign-in token (the last part of the link); null when not known. */
  token: string | null;
}

/** The sign-in link of a token under a base URL (no trailing slash expected, one tolerated). */
export function signInLink(baseUrl: string, token: string): string {
  return `${baseUrl.replace(/\/+$/, '')}/login/t/${token}`;
}

const LINK_TOKEN_RE = /\/login\/t\/([^/?#\s]+)$/;
const NONE = '-';

const HEADER = [
  '# comfy-multi participants: login material in clear text. Keep this file private (mode 0600).',
  '# Rebuilt by `comfy-multi users …` commands; the room column may be edited by hand.',
  '# A password shows "-" once it is no longer the current one; the sign-in link is the main login.',
  '# user\troom\tpassword\tpassword version\tsign-in link',
];

/**
 * Reads a participants file; missing file → empty. Also reads the older format
 * (`user<TAB>password<TAB>link`, and `user<TAB>(already existed…)` lines) so an upgrade keeps the
 * passwords such a file still holds.
 */
export function readParticipantsFile(path: string): Map<string, ParticipantEntry> {
  const entries = new Map<string, ParticipantEntry>();
  if (!existsSync(path)) return entries;
  for (const line of readFileSync(path, 'utf8').split(/\r?\n/)) {
    if (!line.trim() || line.startsWith('#')) continue;
    const cols = line.split('\t');
    const user = cols[0]!.trim();
    if (!user) continue;
    const value = (s: string | undefined) => (s === undefined || s === NONE || s === '' ? null : s);
    if (cols.length >= 5) {
      const version = value(cols[3]);
      const link = value(cols[4]);
      entries.set(user, {
        user,
        room: value(cols[1]) ?? '',
        password: value(cols[2]),
        passwordVersion: version !== null && /^\d+$/.test(version) ? Number(version) : null,
        token: link ? (LINK_TOKEN_RE.exec(link)?.[1] ?? null) : null,
      });
    } else {
      // The older format: a password (or a note in parentheses) and a link with it in the fragment.
      const pw = value(cols[1]);
      entries.set(user, {
        user,
        room: '',
        password: pw && !pw.startsWith('(') ? pw : null,
        passwordVersion: null,
        token: null,
      });
    }
  }
  return entries;
}

/** Writes the file atomically (a crash never leaves half a file) with mode 0600. */
export function writeParticipantsFile(
  path: string,
  entries: Iterable<ParticipantEntry>,
  baseUrl: string,
): void {
  const lines = [...HEADER];
  for (const e of [...entries].sort((a, b) => (a.user < b.user ? -1 : a.user > b.user ? 1 : 0))) {
    lines.push(
      [
        e.user,
        e.room || NONE,
        e.password ?? NONE,
        e.passwordVersion === null ? NONE : String(e.passwordVersion),
        e.token ? signInLink(baseUrl, e.token) : NONE,
      ].join('\t'),
    );
  }
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${lines.join('\n')}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}

export interface Reconciled {
  /** One entry per participant account, sorted by name. */
  entries: ParticipantEntry[];
  /** Participants whose current link is in the store but not in the file (can't be shown). */
  linkNotHere: string[];
}

/**
 * Brings the file's entries in line with the store: only participant accounts, passwords only
 * while current, tokens only while current. Never issues or revokes anything.
 */
export async function reconcile(
  store: JobStore,
  entries: Map<string, ParticipantEntry>,
): Promise<Reconciled> {
  const tokens = new SignInTokens(store);
  const out: ParticipantEntry[] = [];
  const linkNotHere: string[] = [];
  const participants = (await store.listAccounts()).filter((a) => a.role === 'participant');
  for (const account of participants) {
    const e: ParticipantEntry = { ...(entries.get(account.name) ?? emptyEntry(account.name)) };
    await checkPassword(e, account);
    if (e.token !== null && (await tokens.resolve(e.token))?.name !== account.name) e.token = null;
    if (e.token === null && (await tokens.issuedAt(account)) !== null) linkNotHere.push(account.name);
    out.push(e);
  }
  return { entries: out, linkNotHere };
}

export function emptyEntry(user: string): ParticipantEntry {
  return { user, room: '', password: null, passwordVersion: null, token: null };
}

async function checkPassword(e: ParticipantEntry, account: Account): Promise<void> {
  if (e.password === null) {
    e.passwordVersion = null;
    return;
  }
  if (e.passwordVersion === null) {
    // An older file without versions: bcrypt tells whether the password is still the current one.
    if (await verifyPassword(e.password, account.passwordHash)) e.passwordVersion = account.passwordVersion;
    else e.password = null;
    return;
  }
  if (e.passwordVersion !== account.passwordVersion) {
    e.password = null;
    e.passwordVersion = null;
  }
}
