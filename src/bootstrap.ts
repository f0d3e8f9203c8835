import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { AccountService } from './auth/account-service.js';

/**
 * On first start (no accounts at all) creates the instructor `admin`. Its password comes from
 * ADMIN_PASSWORD or is generated, printed once to the terminal (never to the log) and written to
 * DATA_DIR/credentials.txt with mode 0600.
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
): Promise<boolean> {
  if ((await accounts.list()).length > 0) return false;
  const { password } = await accounts.create('admin', 'instructor', opts.adminPassword);
  opts.logger.info({ user: 'admin' }, 'created the first instructor account');
  if (!opts.adminPassword) {
    const file = join(opts.dataDir, 'credentials.txt');
    writeFileSync(
      file,
      `# comfy-multi instructor login\nuser: admin\npassword: ${password}\nurl: ${opts.publicUrl}/admin/\n`,
      {
        mode: 0o600,
      },
    );
    const print = opts.print ?? ((s: string) => process.stdout.write(s));
    print(
      `\n  Instructor account created: admin / ${password}\n  (also saved to ${file}, readable only by you)\n\n`,
    );
  }
  return true;
}
