export {
  CARDS_FILE,
  updateLoginMaterial,
  writeCardsFile,
  type MaterialChanges,
} from '../../auth/login-material-update.js';

/** A note for participants whose link exists but is not in this file. */
export function linkNotHereNote(users: readonly string[]): string {
  if (users.length === 0) return '';
  return (
    `note: the current sign-in link of ${users.join(', ')} is not in the participants file ` +
    `(it was made elsewhere or the file was replaced); it still works. To print a card, make a new one: ` +
    `comfy-multi users links --regenerate ${users.join(' ')}\n`
  );
}
