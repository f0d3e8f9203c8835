import { dirname, join } from 'node:path';
import type { Command } from 'commander';
import { AccountService } from '../../auth/account-service.js';
import { writeHtpasswd } from '../../auth/htpasswd.js';
import { participantsFilePath } from '../../auth/login-material.js';
import { publicBaseUrl, publicUrlNotice } from '../../config/public-url.js';
import { cliConfig, fail, withStore } from '../context.js';
import { CARDS_FILE, linkNotHereNote, updateLoginMaterial } from './users-material.js';

export function registerUsersInit(users: Command): void {
  users
    .command('init')
    .description(
      'create participant accounts user001…userNNN (those missing), give each a sign-in link, and write the participants file and login cards; safe to run again',
    )
    .option('--count <n>', 'how many participants', (v) => Number.parseInt(v, 10), 20)
    .option('--prefix <prefix>', 'name prefix', 'user')
    .option('--room <room>', 'room or group of these participants (one page of cards per room)')
    .option('--out <file>', 'participants file (mode 0600); default DATA_DIR/participants.txt')
    .action(async (opts: { count: number; prefix: string; room?: string; out?: string }) => {
      if (!Number.isInteger(opts.count) || opts.count < 1 || opts.count > 999)
        fail('--count must be 1…999', 2);
      if (opts.room !== undefined && (/[\t\r\n]/.test(opts.room) || opts.room.length > 100))
        fail('--room must be at most 100 characters on one line', 2);
      const config = cliConfig();
      const base = publicBaseUrl(config);
      const out = opts.out ?? participantsFilePath(config.DATA_DIR);
      const cards = join(dirname(out), CARDS_FILE);
      process.stdout.write(publicUrlNotice(config));
      let created = 0;
      let kept = 0;
      const result = await withStore(config, async (store) => {
        const accounts = new AccountService(store);
        const passwords = new Map<string, { password: string; version: number }>();
        const rooms = new Map<string, string>();
        for (let i = 1; i <= opts.count; i++) {
          const name = `${opts.prefix}${String(i).padStart(3, '0')}`;
          if (opts.room !== undefined) rooms.set(name, opts.room);
          const existing = await accounts.get(name);
          if (existing) {
            if (existing.role !== 'participant') fail(`${name} exists and is an instructor`, 1);
            kept++;
            continue;
          }
          const { account, password } = await accounts.create(name, 'participant').catch((err: unknown) => {
            fail(err instanceof Error ? err.message : String(err));
          });
          passwords.set(name, { password, version: account.passwordVersion });
          created++;
        }
        const r = await updateLoginMaterial(
          store,
          out,
          base,
          { passwords, rooms, issue: 'missing' },
          { cardsPath: cards },
        );
        writeHtpasswd(join(config.DATA_DIR, 'htpasswd'), await accounts.list());
        return r;
      });
      process.stdout.write(
        `created ${created} participant accounts, kept ${kept} existing ones (their passwords are unchanged)\n` +
          `made ${result.issued.length} new sign-in links; ${result.entries.length} participants in all\n` +
          `participants file: ${out} (passwords and links; keep it private)\n` +
          `login cards:       ${cards} (open it in a browser and print it; also on the dashboard)\n` +
          linkNotHereNote(result.linkNotHere),
      );
    });
}
