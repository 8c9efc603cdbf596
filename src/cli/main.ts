#!/usr/bin/env node
import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { Command, InvalidArgumentError } from 'commander';
import { ROLES } from '../auth/roles';
import { packageVersion } from '../common/paths';
import { CliError, cliConfig, terminal } from './context';

// Each command loads its own module when it runs: `--help` and a one-table job stay quick.
/* eslint-disable @typescript-eslint/no-require-imports */
const masterKey = () => require('./master-key') as typeof import('./master-key');
const backups = () => require('./backup') as typeof import('./backup');
const audit = () => require('./audit') as typeof import('./audit');
const users = () => require('./users') as typeof import('./users');
const health = () => require('./doctor') as typeof import('./doctor');
/* eslint-enable @typescript-eslint/no-require-imports */

/**
 * `npx keyward <command>`: operations on the same configuration and database as the app
 * (the environment, KEYWARD_DATA_DIR, DATABASE_URL or the embedded database).
 */
function program(): Command {
  const out = terminal;
  const cli = new Command('keyward')
    .description('Keyward operations: master keys, backups, the audit chain, users, health checks')
    .version(packageVersion())
    .showHelpAfterError()
    .addHelpText(
      'after',
      '\nThe commands read the same environment as Keyward itself (KEYWARD_DATA_DIR, DATABASE_URL, KEYWARD_MASTER_KEYS, …).',
    );

  const masterKeys = cli.command('master-key').description('rotate the master keys that seal every stored secret');
  masterKeys
    .command('add')
    .description('add a new master key version (to master.keys, or printed for KEYWARD_MASTER_KEYS)')
    .action(() => masterKey().addMasterKey(cliConfig(), out));
  masterKeys
    .command('rewrap')
    .description('re-seal every data key with the newest master key version')
    .option('--force', 'even if no instance has started with the newest version yet')
    .action((options: { force?: boolean }) => masterKey().rewrapAll(cliConfig(), out, options));
  masterKeys
    .command('retire')
    .description('remove a master key version that no envelope uses any more')
    .argument('<version>', 'the version to remove', (value) => {
      if (!/^\d+$/.test(value)) throw new InvalidArgumentError('a version number such as 1');
      return Number(value);
    })
    .action((version: number) => masterKey().retireMasterKey(cliConfig(), version, out));

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
      backups().createBackup(cliConfig(), file, out, {
        passphrase: await backups().passphraseOption(options.passphrase),
      }),
    );
  backup
    .command('restore')
    .description('restore an archive into an empty database (whole or not at all)')
    .argument('<file>', 'the archive')
    .option('--passphrase', 'the archive was made with --passphrase (KEYWARD_BACKUP_PASSPHRASE or stdin)')
    .action(async (file: string, options: { passphrase?: boolean }) =>
      backups().restoreBackup(cliConfig(), file, out, {
        passphrase: await backups().passphraseOption(options.passphrase),
      }),
    );

  cli
    .command('audit')
    .description('the audit log')
    .command('verify')
    .description('check the hash chain of the whole audit log')
    .action(() => audit().verifyAudit(cliConfig(), out));

  const user = cli.command('user').description('console and API users');
  user
    .command('create')
    .description('create a user; the password is read from a prompt or the first line of stdin')
    .requiredOption('--email <email>', 'their email address')
    .requiredOption('--role <role>', `one of ${ROLES.join(', ')}`)
    .action((options: { email: string; role: string }) =>
      users().createUser(cliConfig(), options.email, options.role, out),
    );
  user
    .command('reset-password')
    .description("set a user's password (prompt or stdin) and end their console sessions")
    .argument('<email>', 'their email address')
    .action((email: string) => users().resetPassword(cliConfig(), email, out));

  cli
    .command('doctor')
    .description('check configuration, master keys, plugins, Redis and the database, and say how to fix problems')
    .action(async () => {
      if (!(await health().doctor(process.env, out))) process.exitCode = 1;
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
