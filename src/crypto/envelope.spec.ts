import { decrypt, DecryptionError, encrypt, envelopeVersion, rewrap } from './envelope';
import { Keyring } from './keyring';

describe('envelope encryption', () => {
  const v1 = Keyring.generateKey();
  const v2 = Keyring.generateKey();
  const keyringV1 = new Keyring([[1, v1]]);
  const keyringV1V2 = new Keyring([
    [1, v1],
    [2, v2],
  ]);
  const secret = 'sk-proj-T3BlbkFJ-abcdefghijklmnopqrstuvwxyz0123456789';
  const aad = 'api_key:5b8f0d3e-1111-4222-8333-944444444444:openai';

  it('round-trips a secret and names the master key version in the header', () => {
    const sut = encrypt(keyringV1, secret, aad);
    expect(decrypt(keyringV1, sut, aad).toString('utf8')).toBe(secret);
    expect(envelopeVersion(sut)).toBe(1);
    expect(sut.includes(Buffer.from(secret))).toBe(false);
  });

  it('seals with the newest master key version', () => {
    expect(envelopeVersion(encrypt(keyringV1V2, secret, aad))).toBe(2);
  });

  it.each([
    ['the wrapped data key', 7 + 20],
    ['the data key tag', 7 + 12 + 32 + 3],
    ['the data nonce', 7 + 60 + 2],
    ['the data tag', 7 + 60 + 12 + 5],
    ['the ciphertext', -1],
  ])('rejects a flipped bit in %s', (_part, offset) => {
    const sut = encrypt(keyringV1, secret, aad);
    const index = offset < 0 ? sut.length + offset : offset;
    sut[index] ^= 0x01;
    expect(() => decrypt(keyringV1, sut, aad)).toThrow(DecryptionError);
  });

  it('rejects a ciphertext moved to another record (AAD mismatch)', () => {
    const sut = encrypt(keyringV1, secret, aad);
    expect(() => decrypt(keyringV1, sut, 'api_key:another-id:openai')).toThrow(DecryptionError);
  });

  it('rejects an envelope whose header names a version the keyring does not have', () => {
    const sut = encrypt(keyringV1V2, secret, aad);
    expect(() => decrypt(keyringV1, sut, aad)).toThrow(/master key version 2 is not configured/);
  });

  it('rejects an envelope whose header was edited to another configured version', () => {
    const sut = encrypt(keyringV1V2, secret, aad);
    sut.writeUInt32BE(1, 3);
    expect(() => decrypt(keyringV1V2, sut, aad)).toThrow(DecryptionError);
  });

  it('rejects a wrong master key under the right version number', () => {
    const sut = encrypt(keyringV1, secret, aad);
    const impostor = new Keyring([[1, Keyring.generateKey()]]);
    expect(() => decrypt(impostor, sut, aad)).toThrow(DecryptionError);
  });

  it('rejects garbage and truncated envelopes without echoing them', () => {
    expect(() => decrypt(keyringV1, Buffer.from(secret), aad)).toThrow('not a Keyward envelope');
    const sut = encrypt(keyringV1, secret, aad).subarray(0, 40);
    expect(() => decrypt(keyringV1, sut, aad)).toThrow(DecryptionError);
  });

  it('re-wraps to the newest version: same plaintext, same sealed secret, new wrap', () => {
    const original = encrypt(keyringV1, secret, aad);
    const sut = rewrap(keyringV1V2, original, aad);

    expect(envelopeVersion(sut)).toBe(2);
    expect(decrypt(keyringV1V2, sut, aad).toString('utf8')).toBe(secret);
    // The data part (nonce, tag, ciphertext) is carried over; the wrapped key is new.
    expect(sut.subarray(67).equals(original.subarray(67))).toBe(true);
    expect(sut.subarray(7, 67).equals(original.subarray(7, 67))).toBe(false);
    // Once re-wrapped, version 1 can be retired.
    expect(decrypt(new Keyring([[2, v2]]), sut, aad).toString('utf8')).toBe(secret);
  });

  it('leaves an envelope already on the newest version untouched', () => {
    const current = encrypt(keyringV1V2, secret, aad);
    expect(rewrap(keyringV1V2, current, aad)).toBe(current);
  });

  it('never reuses a nonce across encryptions of the same secret', () => {
    const nonces = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const sut = encrypt(keyringV1, secret, aad);
      nonces.add(sut.subarray(7, 19).toString('hex'));
      nonces.add(sut.subarray(67, 79).toString('hex'));
    }
    expect(nonces.size).toBe(4000);
  });
});

describe('Keyring', () => {
  it('parses versioned keys and picks the highest as newest', () => {
    const a = Keyring.generateKey().toString('base64');
    const b = Keyring.generateKey().toString('base64');
    const sut = Keyring.parse(`3:${a}, 7:${b}`);
    expect(sut.versions()).toEqual([3, 7]);
    expect(sut.newest().version).toBe(7);
  });

  it('refuses keys of the wrong length and duplicate versions', () => {
    expect(() => Keyring.parse(`1:${Buffer.alloc(16).toString('base64')}`)).toThrow(/32 bytes/);
    const k = Keyring.generateKey().toString('base64');
    expect(() => Keyring.parse(`1:${k},1:${k}`)).toThrow(/given twice/);
  });
});
