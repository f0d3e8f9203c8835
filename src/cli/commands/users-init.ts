import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { AccountService } from '../../auth/account-service.js';
import { writeHtpasswd } from '../../auth/htpasswd.js';
import { cliConfig, fail, withStore } from '../context.js';
import { publicBaseUrl } from '../../config/public-url.js';

/** A login link with the credentials in the fragment, which browsers never send to the server. */
export function loginLink(baseUrl: string, user: string, password: string): string {
  const fragment = new URLSearchParams({ user, password }).toString();
  return `${baseUrl.replace(/\/$/, '')}/login?next=${encodeURIComponent(`/${user}/`)}#${fragment}`;
}

export function registerUsersInit(users: Command): void {
  users
    .command('init')
    .description('create participant accounts user001…userNNN and write their credentials file')
    .option('--count <n>', 'how many participants', (v) => Number.parseInt(v, 10), 20)
    .option('--prefix <prefix>', 'name prefix', 'user')
    .option('--out <file>', 'credentials file (mode 0600); default DATA_DIR/participants.txt')
    .action(async (opts: { count: number; prefix: string; out?: string }) => {
      if (!Number.isInteger(opts.count) || opts.count < 1 || opts.count > 999)
        fail('--count must be 1…999', 2);
      const config = cliConfig();
      const base = publicBaseUrl(config);
      const out = opts.out ?? join(config.DATA_DIR, 'participants.txt');
      const lines: string[] = [];
      let created = 0;
      await withStore(config, async (store) => {
        const accounts = new AccountService(store);
        for (let i = 1; i <= opts.count; i++) {
          const name = `${opts.prefix}${String(i).padStart(3, '0')}`;
          if (await accounts.get(name)) {
            lines.push(`${name}\t(already existed; password unchanged)`);
            continue;
          }
          const { password } = await accounts.create(name, 'participant');
          created++;
          lines.push(`${name}\t${password}\t${loginLink(base, name, password)}`);
        }
        writeHtpasswd(join(config.DATA_DIR, 'htpasswd'), await accounts.list());
      });
      writeFileSync(out, `# user\tpassword\tlogin link (keep this file private)\n${lines.join('\n')}\n`, {
        mode: 0o600,
      });
      process.stdout.write(`created ${created} participant accounts; credentials written to ${out}\n`);
    });
}
