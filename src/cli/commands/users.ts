import type { Command } from 'commander';
import { AccountService } from '../../auth/account-service.js';
import { AppError } from '../../errors.js';
import { ROLES, type Role } from '../../store/types.js';
import { join } from 'node:path';
import { writeHtpasswd } from '../../auth/htpasswd.js';
import { cliConfig, fail, readStdin, withStore } from '../context.js';
import { registerUsersInit } from './users-init.js';
import { registerUsersLinks } from './users-links.js';
import { participantsFilePath, signInLink } from '../../auth/login-material.js';
import { SignInTokens } from '../../auth/sign-in-tokens.js';
import { publicBaseUrl } from '../../config/public-url.js';
import type { JobStore } from '../../store/types.js';
import { CARDS_FILE, updateLoginMaterial, type MaterialChanges } from './users-material.js';

function roleOption(value: string): Role {
  if (!(ROLES as readonly string[]).includes(value)) fail(`--role must be one of ${ROLES.join(', ')}`, 2);
  return value as Role;
}

/**
 * Runs an account operation, then rewrites DATA_DIR/htpasswd so a proxy sees the change at once,
 * and (when `material` says what changed) the participants file, so a new password or link is
 * never only on the terminal.
 */
async function run<T extends object>(
  fn: (accounts: AccountService, store: JobStore) => Promise<T>,
  material?: (result: T) => MaterialChanges | null,
): Promise<T & { link?: string | undefined }> {
  const config = cliConfig();
  try {
    return await withStore(config, async (store) => {
      const accounts = new AccountService(store);
      const result = await fn(accounts, store);
      writeHtpasswd(join(config.DATA_DIR, 'htpasswd'), await accounts.list());
      const changes = material?.(result);
      if (!changes) return result as T & { link?: string };
      const base = publicBaseUrl(config);
      const m = await updateLoginMaterial(store, participantsFilePath(config.DATA_DIR), base, changes, {
        cardsPath: join(config.DATA_DIR, CARDS_FILE),
      });
      const name = (result as { account?: { name: string } }).account?.name;
      const token = m.entries.find((e) => e.user === name)?.token;
      return { ...result, link: token ? signInLink(base, token) : undefined };
    });
  } catch (err) {
    if (err instanceof AppError) fail(err.message);
    throw err;
  }
}

export function registerUsers(program: Command): void {
  const users = program.command('users').description('manage participant and instructor accounts');
  registerUsersInit(users);
  registerUsersLinks(users);

  users
    .command('add <name>')
    .description('create an account and print its password once')
    .option('--role <role>', 'participant or instructor', roleOption, 'participant' as Role)
    .option('--password-stdin', 'read the password from standard input instead of generating one')
    .action(async (name: string, opts: { role: Role; passwordStdin?: boolean }) => {
      const given = opts.passwordStdin ? await readStdin() : undefined;
      if (given !== undefined && given.length < 8) fail('the password must have at least 8 characters', 2);
      const { account, password, link } = await run(
        (a) => a.create(name, opts.role, given),
        (r) =>
          r.account.role === 'participant'
            ? {
                passwords: new Map([
                  [r.account.name, { password: r.password, version: r.account.passwordVersion }],
                ]),
                issue: [r.account.name],
              }
            : null,
      );
      process.stdout.write(
        given
          ? `created ${account.role} ${account.name}\n`
          : `created ${account.role} ${account.name} with password: ${password}\n`,
      );
      if (link)
        process.stdout.write(
          `sign-in link: ${link}\n(in the participants file and the login cards: comfy-multi users cards)\n`,
        );
    });

  users
    .command('list')
    .description('list accounts')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const list = await run((a) => a.list());
      const rows = list.map((u) => ({
        name: u.name,
        role: u.role,
        createdAt: new Date(u.createdAt).toISOString(),
      }));
      if (opts.json) process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
      else
        for (const r of rows)
          process.stdout.write(`${r.name.padEnd(34)}${r.role.padEnd(13)}${r.createdAt}\n`);
    });

  users
    .command('remove <name>')
    .description('delete an account (its files and history stay)')
    .action(async (name: string) => {
      // The link goes with the account (and its line leaves the participants file).
      const removed = await run(
        async (a, store) => {
          const ok = await a.remove(name);
          await new SignInTokens(store).revoke(name);
          return { ok };
        },
        () => ({}),
      );
      if (!removed.ok) fail(`no user named ${name}`);
      process.stdout.write(`removed ${name}\n`);
    });

  users
    .command('reset-password <name>')
    .description('give an account a new password and print it once')
    .option('--password-stdin', 'read the new password from standard input')
    .action(async (name: string, opts: { passwordStdin?: boolean }) => {
      const given = opts.passwordStdin ? await readStdin() : undefined;
      const { password } = await run(
        (a) => a.resetPassword(name, given),
        (r) =>
          r.account.role === 'participant'
            ? {
                passwords: new Map([
                  [r.account.name, { password: r.password, version: r.account.passwordVersion }],
                ]),
              }
            : null,
      );
      process.stdout.write(
        given ? `password of ${name} changed\n` : `new password of ${name}: ${password}\n`,
      );
    });
}
