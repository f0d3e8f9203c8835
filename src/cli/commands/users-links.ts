import { join } from 'node:path';
import type { Command } from 'commander';
import { participantsFilePath, signInLink } from '../../auth/login-material.js';
import { isValidAccountName } from '../../auth/user-names.js';
import { publicBaseUrl, publicUrlNotice } from '../../config/public-url.js';
import { AppError } from '../../errors.js';
import { cliConfig, fail, withStore } from '../context.js';
import { CARDS_FILE, linkNotHereNote, updateLoginMaterial, writeCardsFile } from './users-material.js';

function checkNames(names: string[]): void {
  for (const n of names) if (!isValidAccountName(n)) fail(`"${n}" is not a valid user name`, 2);
}

/** `users links` and `users cards`: participants' sign-in links and their printable login cards. */
export function registerUsersLinks(users: Command): void {
  users
    .command('links [names...]')
    .description(
      'print participants’ sign-in links (making one for each participant who has none); --regenerate replaces them, --revoke ends them',
    )
    .option('--regenerate', 'make new links for NAMES (or --all); their old links stop working')
    .option('--revoke', 'end the links of NAMES without making new ones')
    .option('--all', 'with --regenerate: every participant (every printed card stops working)')
    .action(async (names: string[], opts: { regenerate?: boolean; revoke?: boolean; all?: boolean }) => {
      checkNames(names);
      if (opts.regenerate && opts.revoke) fail('use either --regenerate or --revoke', 2);
      if (opts.revoke && names.length === 0) fail('--revoke needs the names whose links to end', 2);
      if (opts.all && (!opts.regenerate || names.length > 0))
        fail('--all goes with --regenerate and no names', 2);
      // Replacing every link invalidates every printed card: only when asked for explicitly.
      if (opts.regenerate && names.length === 0 && !opts.all)
        fail('--regenerate needs the names whose links to replace, or --all for every participant', 2);
      const config = cliConfig();
      const base = publicBaseUrl(config);
      const file = participantsFilePath(config.DATA_DIR);
      process.stderr.write(publicUrlNotice(config));
      const result = await withStore(config, async (store) => {
        const participants = (await store.listAccounts()).filter((a) => a.role === 'participant');
        const issue = opts.revoke
          ? undefined
          : opts.regenerate
            ? names.length > 0
              ? names
              : participants.map((a) => a.name)
            : ('missing' as const);
        return updateLoginMaterial(
          store,
          file,
          base,
          {
            ...(issue ? { issue } : {}),
            ...(opts.revoke ? { revoke: names } : {}),
          },
          { cardsPath: join(config.DATA_DIR, CARDS_FILE) },
        );
      }).catch((err: unknown) => {
        if (err instanceof AppError) fail(err.message);
        throw err;
      });
      if (opts.revoke) {
        process.stdout.write(
          `${result.revoked.length ? `ended the links of ${result.revoked.join(', ')}` : 'no link to end'}\n`,
        );
      } else {
        const shown = result.entries.filter((e) => names.length === 0 || names.includes(e.user));
        for (const e of shown) {
          process.stdout.write(
            `${e.user}\t${e.token ? signInLink(base, e.token) : '(link not known here; use --regenerate)'}\n`,
          );
        }
      }
      process.stderr.write(
        `new links: ${result.issued.length}; participants file ${file} updated.\n` +
          (result.issued.length + result.revoked.length > 0
            ? `login cards updated: ${join(config.DATA_DIR, CARDS_FILE)} (print the changed ones: comfy-multi users cards NAMES)\n`
            : '') +
          linkNotHereNote(result.linkNotHere),
      );
    });

  users
    .command('cards [names...]')
    .description(
      'write the printable login cards page (one card per participant, QR code of the sign-in link)',
    )
    .option('--out <file>', 'where to write the HTML page (mode 0600); default DATA_DIR/login-cards.html')
    .option('--room <room>', 'only the cards of this room')
    .option('--title <title>', 'title on every card, e.g. the workshop’s name')
    .action(async (names: string[], opts: { out?: string; room?: string; title?: string }) => {
      checkNames(names);
      const config = cliConfig();
      const base = publicBaseUrl(config);
      const file = participantsFilePath(config.DATA_DIR);
      const out = opts.out ?? join(config.DATA_DIR, CARDS_FILE);
      process.stderr.write(publicUrlNotice(config));
      // Only reads and re-checks: cards never make or end links by themselves.
      const result = await withStore(config, (store) => updateLoginMaterial(store, file, base));
      const entries = result.entries.filter(
        (e) =>
          (names.length === 0 || names.includes(e.user)) && (opts.room === undefined || e.room === opts.room),
      );
      const unknown = names.filter((n) => !result.entries.some((e) => e.user === n));
      if (unknown.length) fail(`no participant named ${unknown.join(', ')}`);
      writeCardsFile(out, entries, base, result.linkNotHere, opts.title);
      const withoutLink = entries.filter((e) => !e.token).map((e) => e.user);
      process.stdout.write(
        `wrote ${entries.length} login cards to ${out} (mode 0600: the cards sign people in)\n` +
          (withoutLink.length
            ? `warning: no sign-in link known for ${withoutLink.join(', ')}: comfy-multi users links --regenerate ${withoutLink.join(' ')}\n`
            : ''),
      );
    });
}
