#!/usr/bin/env node
import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { Command, InvalidArgumentError } from 'commander';
import { ROLES } from '../auth/roles';
import { KEYWARD_VERSION } from '../bootstrap';
import { verifyAudit } from './audit';
import { createBackup, passphraseOption, restoreBackup } from './backup';
import { CliError, cliConfig, terminal } from './context';
import { doctor } from './doctor';
import { addMasterKey, retireMasterKey, rewrapAll } from './master-key';
import { createUser, resetPassword } from './users';

/**
 * `npx keyward <command>`: operations on the same configuration and database as the app
 * (the environment, KEYWARD_DATA_DIR, DATABASE_URL or the embedded database).
 */
function program(): Command {
  const out = terminal;
  const cli = new Command('keyward')
    .description('Keyward operations: master keys, backups, the audit chain, users, health checks')
    .version(KEYWARD_VERSION)
    .showHelpAfterError()
    .addHelpText(
      'after',
      '\nThe commands read the same environment as Keyward itself (KEYWARD_DATA_DIR, DATABASE_URL, KEYWARD_MASTER_KEYS, …).',
    );

  const masterKey = cli.command('master-key').description('rotate the master keys that seal every stored secret');
  masterKey
    .command('add')
    .description('add a new master key version (to master.keys, or printed for KEYWARD_MASTER_KEYS)')
    .action(() => addMasterKey(cliConfig(), out));
  masterKey
    .command('rewrap')
    .description('re-seal every data key with the newest master key version')
    .option('--force', 'even if no instance has started with the newest version yet')
    .action((options: { force?: boolean }) => rewrapAll(cliConfig(), out, options));
  masterKey
    .command('retire')
    .description('remove a master key version that no envelope uses any more')
    .argument('<version>', 'the version to remove', (value) => {
      if (!/^\d+$/.test(value)) throw new InvalidArgumentError('a version number such as 1');
      return Number(value);
    })
    .action((version: number) => retireMasterKey(cliConfig(), version, out));

  const backup = cli.command('backup').description('encrypted archives of the whole state');
  backup
    .command('create')
    .description('write every table to an encrypted archive (one consistent snapshot)')
    .argument('<file>', 'where to write the archive')
    .option(
      '--passphrase',
      'encrypt with a passphrase (KEYWARD_BACKUP_PASSPHRASE or stdin) instead of a key derived from the master key',
    )
    .action(async (file: string, options: { passphrase?: boolean }) =>
      createBackup(cliConfig(), file, out, { passphrase: await passphraseOption(options.passphrase) }),
    );
  backup
    .command('restore')
    .description('restore an archive into an empty database (whole or not at all)')
    .argument('<file>', 'the archive')
    .option('--passphrase', 'the archive was made with --passphrase (KEYWARD_BACKUP_PASSPHRASE or stdin)')
    .action(async (file: string, options: { passphrase?: boolean }) =>
      restoreBackup(cliConfig(), file, out, { passphrase: await passphraseOption(options.passphrase) }),
    );

  cli
    .command('audit')
    .description('the audit log')
    .command('verify')
    .description('check the hash chain of the whole audit log')
    .action(() => verifyAudit(cliConfig(), out));

  const user = cli.command('user').description('console and API users');
  user
    .command('create')
    .description('create a user; the password is read from a prompt or the first line of stdin')
    .requiredOption('--email <email>', 'their email address')
    .requiredOption('--role <role>', `one of ${ROLES.join(', ')}`)
    .action((options: { email: string; role: string }) => createUser(cliConfig(), options.email, options.role, out));
  user
    .command('reset-password')
    .description("set a user's password (prompt or stdin) and end their console sessions")
    .argument('<email>', 'their email address')
    .action((email: string) => resetPassword(cliConfig(), email, out));

  cli
    .command('doctor')
    .description('check configuration, master keys, plugins, Redis and the database, and say how to fix problems')
    .action(async () => {
      if (!(await doctor(process.env, out))) process.exitCode = 1;
    });
  return cli;
}

// The services the commands reuse log through Nest; the CLI reports for itself, on stdout/stderr.
Logger.overrideLogger(false);

program()
  .parseAsync(process.argv)
  .then(
    () => process.exit(process.exitCode ?? 0),
    (error: unknown) => {
      if (error instanceof CliError) {
        process.stderr.write(`keyward: ${error.message}\n`);
        process.exit(error.code);
      }
      process.stderr.write(`keyward: unexpected error: ${error instanceof Error ? error.message : String(error)}\n`);
      if (process.env.KEYWARD_CLI_DEBUG) process.stderr.write(`${(error as Error).stack}\n`);
      process.exit(1);
    },
  );
