import { renameSync, writeFileSync } from 'node:fs';
import { renderLoginCards } from './login-cards.js';
import {
  emptyEntry,
  readParticipantsFile,
  reconcile,
  writeParticipantsFile,
  type ParticipantEntry,
} from './login-material.js';
import { SignInTokens } from './sign-in-tokens.js';
import { AppError } from '../errors.js';
import type { JobStore } from '../store/types.js';

/** What a `users …` command (or a dashboard reset) changes in the participants' login material. */
export interface MaterialChanges {
  /** Passwords just set (created or reset), with the passwordVersion they belong to. */
  passwords?: Map<string, { password: string; version: number }>;
  /** Rooms to record. */
  rooms?: Map<string, string>;
  /** Make new links: for these participants, or `missing` = every participant that has none. */
  issue?: 'missing' | string[];
  /** End these participants' links. */
  revoke?: string[];
}

export interface MaterialResult {
  /** Every participant, sorted by name, as now written to the file. */
  entries: ParticipantEntry[];
  /** Participants with a current link whose token is not in this file (never replaced silently). */
  linkNotHere: string[];
  issued: string[];
  revoked: string[];
}

/**
 * The one way login material changes (CLI commands, the dashboard's password reset): read the participants file, apply the changes to
 * it and to the store, check every line against the store, write the file back (0600, atomically).
 * Material is never lost: existing passwords and links stay unless they stopped being current.
 */
export async function updateLoginMaterial(
  store: JobStore,
  path: string,
  baseUrl: string,
  changes: MaterialChanges = {},
  opts: { cardsPath?: string } = {},
): Promise<MaterialResult> {
  const file = readParticipantsFile(path);
  for (const [user, p] of changes.passwords ?? []) {
    file.set(user, {
      ...(file.get(user) ?? emptyEntry(user)),
      password: p.password,
      passwordVersion: p.version,
    });
  }
  for (const [user, room] of changes.rooms ?? []) {
    file.set(user, { ...(file.get(user) ?? emptyEntry(user)), room });
  }
  const { entries, linkNotHere } = await reconcile(store, file);
  const byName = new Map(entries.map((e) => [e.user, e]));
  const notHere = new Set(linkNotHere);
  const tokens = new SignInTokens(store);

  const revoked: string[] = [];
  for (const user of changes.revoke ?? []) {
    const account = await store.getAccount(user);
    if (!account) throw new AppError('USER_NOT_FOUND', `No user named ${user}.`);
    if (await tokens.revoke(user)) revoked.push(user);
    const e = byName.get(user);
    if (e) e.token = null;
    notHere.delete(user);
  }

  const issued: string[] = [];
  const toIssue =
    changes.issue === 'missing'
      ? entries.filter((e) => e.token === null && !notHere.has(e.user)).map((e) => e.user)
      : (changes.issue ?? []);
  for (const user of toIssue) {
    const account = await store.getAccount(user);
    if (!account) throw new AppError('USER_NOT_FOUND', `No user named ${user}.`);
    if (account.role !== 'participant') {
      throw new AppError('FORBIDDEN', `${user} is an instructor; sign-in links are for participants only.`);
    }
    byName.get(user)!.token = (await tokens.issue(account)).token;
    notHere.delete(user);
    issued.push(user);
  }

  writeParticipantsFile(path, entries, baseUrl);
  const result = { entries, linkNotHere: [...notHere].sort(), issued, revoked };
  // The printable cards follow every change (a reset, a new link, a new PUBLIC_URL).
  if (opts.cardsPath) writeCardsFile(opts.cardsPath, entries, baseUrl, result.linkNotHere);
  return result;
}

/** The login cards page beside the participants file: DATA_DIR/login-cards.html. */
export const CARDS_FILE = 'login-cards.html';

/** Writes a login cards page (mode 0600: it signs people in), atomically. */
export function writeCardsFile(
  path: string,
  entries: readonly ParticipantEntry[],
  baseUrl: string,
  linkNotHere: readonly string[],
  title?: string,
): void {
  const html = renderLoginCards(entries, {
    baseUrl,
    missingLinks: linkNotHere.filter((u) => entries.some((e) => e.user === u)),
    ...(title ? { title } : {}),
  });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, html, { mode: 0o600 });
  renameSync(tmp, path);
}
