import { plainToInstance } from 'class-transformer';
import { validateSync } from 'class-validator';
import { createInterface } from 'node:readline';
import { hashPassword, PASSWORD_MAX, PASSWORD_MIN } from '../auth/password';
import { CreateUserDto } from '../auth/users/dto/create-user.dto';
import { UsersService } from '../auth/users/users.service';
import { ProblemException } from '../common/problem';
import type { KeywardConfig } from '../config/config';
import { CLI_CONTEXT, CliError, cliKeyring, openDatabase, openVault, type Output } from './context';

/**
 * The password: typed at a prompt that does not echo it, or the first line of stdin when it is
 * piped (scripts). Never an argument: arguments show in `ps` and shell history.
 */
async function readPassword(out: Output, prompt: string): Promise<string> {
  if (!process.stdin.isTTY) {
    for await (const line of createInterface({ input: process.stdin })) return line;
    return '';
  }
  out.note(prompt);
  process.stdin.setRawMode(true);
  process.stdin.resume();
  let typed = '';
  try {
    return await new Promise<string>((resolve, reject) => {
      process.stdin.on('data', (chunk: Buffer) => {
        for (const ch of chunk.toString('utf8')) {
          if (ch === '\r' || ch === '\n') return resolve(typed);
          if (ch === '\u0003') return reject(new CliError('cancelled', 130));
          typed = ch === '\u007f' ? typed.slice(0, -1) : typed + ch;
        }
      });
    });
  } finally {
    process.stdin.setRawMode(false);
    process.stdin.pause();
  }
}

function problemMessage(error: unknown): never {
  if (error instanceof ProblemException) {
    const errors = (error.problem.errors as { messages: string[] }[] | undefined)?.flatMap((e) => e.messages);
    throw new CliError(errors?.length ? errors.join('; ') : (error.problem.detail ?? error.problem.title));
  }
  throw error;
}

/** `user create --email --role`: also how to get an owner back when none can sign in. */
export async function createUser(config: KeywardConfig, email: string, role: string, out: Output): Promise<void> {
  const password = await readPassword(out, `Password for ${email} (${PASSWORD_MIN}-${PASSWORD_MAX} characters):`);
  const dto = plainToInstance(CreateUserDto, { email, role, password });
  const problems = validateSync(dto).flatMap((e) => Object.values(e.constraints ?? {}));
  if (problems.length > 0) throw new CliError(problems.join('; '));
  const keys = await cliKeyring(config);
  const db = await openDatabase(config, out);
  try {
    const { audit } = await openVault(keys, db);
    const user = await new UsersService(db.dataSource).create(dto, null).catch(problemMessage);
    await audit.record(CLI_CONTEXT, {
      action: 'user.created',
      outcome: 'success',
      target: { type: 'user', id: user.id },
      details: { email: user.email, role: user.role },
    });
    out.line(`Created ${user.role} ${user.email} (${user.id}).`);
  } finally {
    await db.close();
  }
}

/** `user reset-password <email>`: a new password, and every console session of the user ends. */
export async function resetPassword(config: KeywardConfig, email: string, out: Output): Promise<void> {
  const normalized = email.trim().toLowerCase();
  const password = await readPassword(out, `New password for ${normalized}:`);
  if (password.length < PASSWORD_MIN || password.length > PASSWORD_MAX) {
    throw new CliError(`the password must be ${PASSWORD_MIN} to ${PASSWORD_MAX} characters long`);
  }
  const keys = await cliKeyring(config);
  const db = await openDatabase(config, out);
  try {
    const { audit } = await openVault(keys, db);
    const [user] = await db.dataSource.query<{ id: string }[]>(`SELECT id FROM users WHERE email = $1`, [normalized]);
    if (!user) throw new CliError(`no user has the email ${normalized}`);
    await db.dataSource.transaction(async (manager) => {
      await manager.query(`UPDATE users SET password_hash = $1, updated_at = now() WHERE id = $2`, [
        await hashPassword(password),
        user.id,
      ]);
      await manager.query(`DELETE FROM sessions WHERE sess->>'userId' = $1`, [user.id]);
    });
    await audit.record(CLI_CONTEXT, {
      action: 'user.password-reset',
      outcome: 'success',
      target: { type: 'user', id: user.id },
      details: { email: normalized },
    });
    out.line(`Reset the password of ${normalized}; their console sessions have ended.`);
  } finally {
    await db.close();
  }
}
