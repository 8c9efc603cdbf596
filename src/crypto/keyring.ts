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

  /** The keyring without one version (`keyward master-key retire`); the newest cannot go. */
  without(version: number): Keyring {
    if (!this.keys.has(version)) throw new KeyringError(`master key version ${version} is not configured`);
    if (version === this.newestVersion) {
      throw new KeyringError(`master key version ${version} is the newest: new data is sealed with it`);
    }
    return new Keyring([...this.keys.entries()].filter(([v]) => v !== version));
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

export const keyFilePath = (dataDir: string) => path.join(dataDir, KEY_FILE_NAME);

/** Where the keys came from, as an operator would look for it: the variable or the file. */
export const describeKeySource = (loaded: Pick<LoadedKeyring, 'source' | 'file'>) =>
  loaded.source === 'environment' ? 'KEYWARD_MASTER_KEYS' : loaded.file!;

/**
 * Reads the master keys from `KEYWARD_MASTER_KEYS`, or from `<dataDir>/master.keys`; null when
 * neither exists. A key file readable by others is refused: it would expose every stored secret.
 */
export async function readKeyring(spec: string | undefined, dataDir: string): Promise<LoadedKeyring | null> {
  if (spec) {
    try {
      return { keyring: Keyring.parse(spec), source: 'environment' };
    } catch (error) {
      throw new KeyringError(`KEYWARD_MASTER_KEYS is not usable: ${(error as Error).message}`);
    }
  }
  const file = keyFilePath(dataDir);
  let content: string;
  try {
    const stat = await fs.stat(file);
    if (process.platform !== 'win32' && (stat.mode & 0o077) !== 0) {
      throw new KeyringError(
        `${file} is readable by other users (mode ${(stat.mode & 0o777).toString(8)}); run: chmod 600 ${file}`,
      );
    }
    content = (await fs.readFile(file, 'utf8')).trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    if (error instanceof KeyringError) throw error;
    throw new KeyringError(`${file} cannot be read: ${(error as Error).message}`);
  }
  try {
    return { keyring: Keyring.parse(content), source: 'file', file };
  } catch (error) {
    throw new KeyringError(`${file} is not usable: ${(error as Error).message}`);
  }
}

/** Creates `<dataDir>/master.keys` (mode 0600) with one fresh key; never overwrites a file. */
export async function createKeyFile(dataDir: string): Promise<LoadedKeyring> {
  const file = keyFilePath(dataDir);
  await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
  const keyring = new Keyring([[1, Keyring.generateKey()]]);
  // 'wx' fails if another process created the file in the meantime, instead of overwriting it.
  await fs.writeFile(file, keyring.serialize() + '\n', { mode: 0o600, flag: 'wx' });
  return { keyring, source: 'file', file, createdFile: file };
}

/**
 * Loads the master keys, creating the key file on first start. Start-up itself uses
 * `readKeyring` and creates the file only when the database holds nothing sealed yet.
 */
export async function loadKeyring(spec: string | undefined, dataDir: string): Promise<LoadedKeyring> {
  return (await readKeyring(spec, dataDir)) ?? createKeyFile(dataDir);
}

/** Replaces the key file atomically (same folder, mode 0600, then rename). */
export async function writeKeyFile(file: string, keyring: Keyring): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, keyring.serialize() + '\n', { mode: 0o600 });
  await fs.rename(tmp, file);
}

/** Adds a new master key version to the key file (`keyward master-key add`). */
export async function addKeyFileVersion(dataDir: string): Promise<{ file: string; version: number }> {
  const file = keyFilePath(dataDir);
  const current = Keyring.parse((await fs.readFile(file, 'utf8')).trim());
  const next = current.withNewVersion();
  await writeKeyFile(file, next);
  return { file, version: next.newest().version };
}
