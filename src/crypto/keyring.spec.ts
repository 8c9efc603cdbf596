import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { addKeyFileVersion, createKeyFile, Keyring, KeyringError, readKeyring } from './keyring';

describe('Keyring', () => {
  const two = new Keyring([
    [1, Keyring.generateKey()],
    [2, Keyring.generateKey()],
  ]);

  it('retires an older version and keeps the others', () => {
    const left = two.without(1);
    expect(left.versions()).toEqual([2]);
    expect(left.get(2)!.equals(two.get(2)!)).toBe(true);
  });

  it('refuses to retire the newest version or one it does not have', () => {
    expect(() => two.without(2)).toThrow(/version 2 is the newest/);
    expect(() => two.without(7)).toThrow(/version 7 is not configured/);
  });
});

describe('the key file', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), 'keyward-keyring-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('is not created by reading: no file and no variable reads as null', async () => {
    expect(await readKeyring(undefined, dir)).toBeNull();
  });

  it('is created with mode 0600 and never overwritten', async () => {
    const created = await createKeyFile(dir);
    expect(statSync(created.file!).mode & 0o777).toBe(0o600);
    await expect(createKeyFile(dir)).rejects.toThrow(/EEXIST/);
    const read = await readKeyring(undefined, dir);
    expect(read!.keyring.serialize()).toBe(created.keyring.serialize());
  });

  it('gains versions in place', async () => {
    await createKeyFile(dir);
    expect(await addKeyFileVersion(dir)).toMatchObject({ version: 2 });
    expect(Keyring.parse(readFileSync(path.join(dir, 'master.keys'), 'utf8')).versions()).toEqual([1, 2]);
  });

  it('is refused when others can read it, or when it is not a keyring, naming the file', async () => {
    const file = (await createKeyFile(dir)).file!;
    chmodSync(file, 0o644);
    await expect(readKeyring(undefined, dir)).rejects.toThrow(`${file} is readable by other users`);
    writeFileSync(file, 'not a key\n', { mode: 0o600 });
    chmodSync(file, 0o600);
    await expect(readKeyring(undefined, dir)).rejects.toThrow(KeyringError);
    await expect(readKeyring(undefined, dir)).rejects.toThrow(`${file} is not usable`);
  });

  it('names KEYWARD_MASTER_KEYS when the variable is wrong', async () => {
    await expect(readKeyring('1:c2hvcnQ=', dir)).rejects.toThrow(
      /^KEYWARD_MASTER_KEYS is not usable: master key version 1 must be 32 bytes/,
    );
  });
});
