import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { AccountService } from './auth/account-service.js';

/**
 * Makes sure an instructor account exists whenever the server starts: on the first start, and also
 * when participants were created before it (`users add`, `users init`) and no instructor was.
 * Creates `admin` (or `instructor` when a participant already holds that name). Its password comes
 * from ADMIN_PASSWORD or is generated, printed once to the terminal (never to the log) and written
 * to DATA_DIR/credentials.txt with mode 0600. Returns the name created, or null when an instructor
 * already existed.
 */
export async function ensureAdmin(
  accounts: AccountService,
  opts: {
    dataDir: string;
    adminPassword?: string | undefined;
    publicUrl: string;
    logger: Logger;
    print?: (s: string) => void;
  },
): Promise<string | null> {
  const all = await accounts.list();
  if (all.some((a) => a.role === 'instructor')) return null;
  const name = all.some((a) => a.name === 'admin') ? 'instructor' : 'admin';
  const { password } = await accounts.create(name, 'instructor', opts.adminPassword);
  const why = all.length === 0 ? 'first start' : `${all.length} accounts but no instructor`;
  opts.logger.info({ user: name, why }, 'created an instructor account');
  const print = opts.print ?? ((s: string) => process.stdout.write(s));
  if (opts.adminPassword) {
    print(`\n  Instructor account created: ${name} (password from ADMIN_PASSWORD)\n\n`);
    return name;
  }
  const file = join(opts.dataDir, 'credentials.txt');
  writeFileSync(
    file,
    `# comfy-multi instructor login\nuser: ${name}\npassword: ${password}\nurl: ${opts.publicUrl}/admin/\n`,
    { mode: 0o600 },
  );
  print(
    (all.length > 0 ? `\n  No instructor account existed (only ${all.length} participant accounts).` : '') +
      `\n  Instructor account created: ${name} / ${password}\n  (also saved to ${file}, readable only by you)\n\n`,
  );
  return name;
}
