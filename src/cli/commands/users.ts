import type { Command } from 'commander';
import { AccountService } from '../../auth/account-service.js';
import { AppError } from '../../errors.js';
import { ROLES, type Role } from '../../store/types.js';
import { join } from 'node:path';
import { writeHtpasswd } from '../../auth/htpasswd.js';
import { cliConfig, fail, readStdin, withStore } from '../context.js';
import { registerUsersInit } from './users-init.js';

function roleOption(value: string): Role {
  if (!(ROLES as readonly string[]).includes(value)) fail(`--role must be one of ${ROLES.join(', ')}`, 2);
  return value as Role;
}

/** Runs an account operation, then rewrites DATA_DIR/htpasswd so a proxy sees the change at once. */
async function run<T>(fn: (accounts: AccountService) => Promise<T>): Promise<T> {
  const config = cliConfig();
  try {
    return await withStore(config, async (store) => {
      const accounts = new AccountService(store);
      const result = await fn(accounts);
      writeHtpasswd(join(config.DATA_DIR, 'htpasswd'), await accounts.list());
      return result;
    });
  } catch (err) {
    if (err instanceof AppError) fail(err.message);
    throw err;
  }
}

export function registerUsers(program: Command): void {
  const users = program.command('users').description('manage participant and instructor accounts');
  registerUsersInit(users);

  users
    .command('add <name>')
    .description('create an account and print its password once')
    .option('--role <role>', 'participant or instructor', roleOption, 'participant' as Role)
    .option('--password-stdin', 'read the password from standard input instead of generating one')
    .action(async (name: string, opts: { role: Role; passwordStdin?: boolean }) => {
      const given = opts.passwordStdin ? await readStdin() : undefined;
      if (given !== undefined && given.length < 8) fail('the password must have at least 8 characters', 2);
      const { account, password } = await run((a) => a.create(name, opts.role, given));
      process.stdout.write(
        given
          ? `created ${account.role} ${account.name}\n`
          : `created ${account.role} ${account.name} with password: ${password}\n`,
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
      if (!(await run((a) => a.remove(name)))) fail(`no user named ${name}`);
      process.stdout.write(`removed ${name}\n`);
    });

  users
    .command('reset-password <name>')
    .description('give an account a new password and print it once')
    .option('--password-stdin', 'read the new password from standard input')
    .action(async (name: string, opts: { passwordStdin?: boolean }) => {
      const given = opts.passwordStdin ? await readStdin() : undefined;
      const { password } = await run((a) => a.resetPassword(name, given));
      process.stdout.write(
        given ? `password of ${name} changed\n` : `new password of ${name}: ${password}\n`,
      );
    });
}
