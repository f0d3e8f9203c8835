import { writeFileSync, renameSync } from 'node:fs';
import { renderLoginCards } from '../../auth/login-cards.js';
import type { ParticipantEntry } from '../../auth/login-material.js';

export { updateLoginMaterial, type MaterialChanges } from '../../auth/login-material-update.js';

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

/** A note for participants whose link exists but is not in this file. */
export function linkNotHereNote(users: readonly string[]): string {
  if (users.length === 0) return '';
  return (
    `note: the current sign-in link of ${users.join(', ')} is not in the participants file ` +
    `(it was made elsewhere or the file was replaced); it still works. To print a card, make a new one: ` +
    `comfy-multi users links --regenerate ${users.join(' ')}\n`
  );
}
