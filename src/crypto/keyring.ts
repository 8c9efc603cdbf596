import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

export const MASTER_KEY_BYTES = 32;

export class KeyringError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyringError';
  }
}

/**
 * The master keys, by version. New data is always sealed with the newest version; older
 * versions stay readable until every envelope has been re-wrapped and the version retired.
 */
export class Keyring {
  private readonly keys: ReadonlyMap<number, Buffer>;
  private readonly newestVersion: number;

  constructor(keys: Iterable<[number, Buffer]>) {
    const map = new Map<number, Buffer>();
    for (const [version, key] of keys) {
      if (!Number.isInteger(version) || version < 1 || version > 0xffffffff) {
        throw new KeyringError(`master key version ${version} must be a whole number from 1`);
      }
      if (key.length !== MASTER_KEY_BYTES) {
        throw new KeyringError(
          `master key version ${version} must be ${MASTER_KEY_BYTES} bytes (base64 of 32 random bytes), got ${key.length}`,
        );
      }
      if (map.has(version)) throw new KeyringError(`master key version ${version} is given twice`);
      map.set(version, Buffer.from(key));
    }
    if (map.size === 0) throw new KeyringError('at least one master key is required');
    this.keys = map;
    this.newestVersion = Math.max(...map.keys());
  }

  /** Parses `KEYWARD_MASTER_KEYS`: `1:<base64>,2:<base64>`. */
  static parse(spec: string): Keyring {
    return new Keyring(
      spec
        .split(',')
        .map((part) => part.trim())
        .filter(Boolean)
        .map((part) => {
          const [version, key] = part.split(':', 2);
          return [Number(version), Buffer.from(key ?? '', 'base64')] as [number, Buffer];
        }),
    );
  }

  static generateKey(): Buffer {
    return randomBytes(MASTER_KEY_BYTES);
  }

  get(version: number): Buffer | undefined {
    return this.keys.get(version);
  }

  newest(): { version: number; key: Buffer } {
    return { version: this.newestVersion, key: this.keys.get(this.newestVersion)! };
  }

  versions(): number[] {
    return [...this.keys.keys()].sort((a, b) => a - b);
  }

  /** The keyring in `KEYWARD_MASTER_KEYS` form; only for writing the key file. */
  serialize(): string {
    return this.versions()
      .map((v) => `${v}:${this.keys.get(v)!.toString('base64')}`)
      .join(',');
  }

  withNewVersion(): Keyring {
    return new Keyring([...this.keys.entries(), [this.newestVersion + 1, Keyring.generateKey()]]);
  }
}

export const KEY_FILE_NAME = 'master.keys';

export interface LoadedKeyring {
  keyring: Keyring;
  source: 'environment' | 'file';
  /** Set when the file was created by this start. */
  createdFile?: string;
  file?: string;
}

/**
 * Loads the master keys from `KEYWARD_MASTER_KEYS`, or from `<dataDir>/master.keys`, creating
 * that file (mode 0600, one fresh key) on first start. A key file readable by others is refused:
 * it would expose every stored secret.
 */
export async function loadKeyring(spec: string | undefined, dataDir: string): Promise<LoadedKeyring> {
  if (spec) return { keyring: Keyring.parse(spec), source: 'environment' };

  const file = path.join(dataDir, KEY_FILE_NAME);
  await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
  try {
    const stat = await fs.stat(file);
    if (process.platform !== 'win32' && (stat.mode & 0o077) !== 0) {
      throw new KeyringError(
        `${file} is readable by other users (mode ${(stat.mode & 0o777).toString(8)}); run: chmod 600 ${file}`,
      );
    }
    const content = (await fs.readFile(file, 'utf8')).trim();
    return { keyring: Keyring.parse(content), source: 'file', file };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }

  const keyring = new Keyring([[1, Keyring.generateKey()]]);
  // 'wx' fails if another process created the file in the meantime, instead of overwriting it.
  await fs.writeFile(file, keyring.serialize() + '\n', { mode: 0o600, flag: 'wx' });
  return { keyring, source: 'file', file, createdFile: file };
}

/** Adds a new master key version to the key file (the `master-key:add` command). */
export async function addKeyFileVersion(dataDir: string): Promise<{ file: string; version: number }> {
  const file = path.join(dataDir, KEY_FILE_NAME);
  const current = Keyring.parse((await fs.readFile(file, 'utf8')).trim());
  const next = current.withNewVersion();
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, next.serialize() + '\n', { mode: 0o600 });
  await fs.rename(tmp, file);
  return { file, version: next.newest().version };
}
