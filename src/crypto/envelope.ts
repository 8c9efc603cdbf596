import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { Keyring } from './keyring';

/*
 * Envelope encryption for provider secrets.
 *
 * Every secret gets its own random 256-bit data key (DEK). The secret is sealed with the DEK
 * (AES-256-GCM); the DEK is sealed with the newest master key. Rotating the master key then only
 * means re-wrapping 32-byte DEKs, never touching the secrets themselves.
 *
 * Layout (all integers big-endian):
 *
 *   magic "KW" | format 0x01 | master key version u32
 *   | DEK nonce (12) | wrapped DEK (32) | DEK tag (16)
 *   | data nonce (12) | data tag (16) | ciphertext (n)
 *
 * Both seals authenticate the caller's AAD (record id + provider), so a ciphertext cannot be
 * replayed into another row. The DEK seal also authenticates the 7-byte header, so the version
 * cannot be edited to point at another master key. The data seal deliberately does not cover the
 * header: re-wrapping to a new master version then leaves the sealed secret byte-for-byte intact.
 */

const MAGIC = Buffer.from('KW', 'ascii');
const FORMAT = 0x01;
const HEADER_LENGTH = MAGIC.length + 1 + 4;
const NONCE_LENGTH = 12;
const TAG_LENGTH = 16;
const KEY_LENGTH = 32;
const WRAP_LENGTH = NONCE_LENGTH + KEY_LENGTH + TAG_LENGTH;
const MIN_LENGTH = HEADER_LENGTH + WRAP_LENGTH + NONCE_LENGTH + TAG_LENGTH;

export class DecryptionError extends Error {
  constructor(reason: string) {
    // Never includes key material or plaintext: only why the envelope was refused.
    super(`Cannot decrypt secret: ${reason}`);
    this.name = 'DecryptionError';
  }
}

function header(version: number): Buffer {
  const out = Buffer.alloc(HEADER_LENGTH);
  MAGIC.copy(out, 0);
  out.writeUInt8(FORMAT, MAGIC.length);
  out.writeUInt32BE(version, MAGIC.length + 1);
  return out;
}

function seal(key: Buffer, plaintext: Buffer, aad: Buffer): Buffer {
  const nonce = randomBytes(NONCE_LENGTH);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_LENGTH });
  cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([nonce, body, cipher.getAuthTag()]);
}

function open(key: Buffer, nonce: Buffer, body: Buffer, tag: Buffer, aad: Buffer): Buffer {
  const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_LENGTH });
  decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  return Buffer.concat([decipher.update(body), decipher.final()]);
}

interface ParsedEnvelope {
  version: number;
  header: Buffer;
  wrappedKey: Buffer;
  dataNonce: Buffer;
  dataTag: Buffer;
  ciphertext: Buffer;
}

function parse(envelope: Buffer): ParsedEnvelope {
  if (envelope.length < MIN_LENGTH || !envelope.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new DecryptionError('not a Keyward envelope');
  }
  if (envelope.readUInt8(MAGIC.length) !== FORMAT) {
    throw new DecryptionError('unsupported envelope format');
  }
  let offset = HEADER_LENGTH;
  const take = (n: number) => envelope.subarray(offset, (offset += n));
  const head = envelope.subarray(0, HEADER_LENGTH);
  const wrappedKey = take(WRAP_LENGTH);
  const dataNonce = take(NONCE_LENGTH);
  const dataTag = take(TAG_LENGTH);
  return {
    version: envelope.readUInt32BE(MAGIC.length + 1),
    header: head,
    wrappedKey,
    dataNonce,
    dataTag,
    ciphertext: envelope.subarray(offset),
  };
}

function unwrapKey(keyring: Keyring, parsed: ParsedEnvelope, aad: Buffer): Buffer {
  const master = keyring.get(parsed.version);
  if (!master) {
    throw new DecryptionError(`master key version ${parsed.version} is not configured`);
  }
  const w = parsed.wrappedKey;
  try {
    return open(
      master,
      w.subarray(0, NONCE_LENGTH),
      w.subarray(NONCE_LENGTH, NONCE_LENGTH + KEY_LENGTH),
      w.subarray(NONCE_LENGTH + KEY_LENGTH),
      Buffer.concat([parsed.header, aad]),
    );
  } catch {
    throw new DecryptionError('the data key failed authentication (wrong master key or tampered)');
  }
}

/** Seals `plaintext` under a fresh data key wrapped by the keyring's newest master key. */
export function encrypt(keyring: Keyring, plaintext: string | Buffer, aad: string): Buffer {
  const { version, key: master } = keyring.newest();
  const head = header(version);
  const recordAad = Buffer.from(aad, 'utf8');
  const dataKey = randomBytes(KEY_LENGTH);
  try {
    const wrapped = seal(master, dataKey, Buffer.concat([head, recordAad]));
    const body = Buffer.isBuffer(plaintext) ? plaintext : Buffer.from(plaintext, 'utf8');
    const data = seal(dataKey, body, recordAad);
    // seal() returns nonce|ciphertext|tag; the envelope stores nonce|tag|ciphertext for the data.
    const dataNonce = data.subarray(0, NONCE_LENGTH);
    const dataTag = data.subarray(data.length - TAG_LENGTH);
    const ciphertext = data.subarray(NONCE_LENGTH, data.length - TAG_LENGTH);
    return Buffer.concat([head, wrapped, dataNonce, dataTag, ciphertext]);
  } finally {
    dataKey.fill(0);
  }
}

/** Opens an envelope; throws `DecryptionError` on any tampering, wrong AAD or unknown version. */
export function decrypt(keyring: Keyring, envelope: Buffer, aad: string): Buffer {
  const parsed = parse(envelope);
  const recordAad = Buffer.from(aad, 'utf8');
  const dataKey = unwrapKey(keyring, parsed, recordAad);
  try {
    return open(dataKey, parsed.dataNonce, parsed.ciphertext, parsed.dataTag, recordAad);
  } catch {
    throw new DecryptionError('the secret failed authentication (tampered or bound to another record)');
  } finally {
    dataKey.fill(0);
  }
}

/** The master key version an envelope's data key is wrapped with. */
export function envelopeVersion(envelope: Buffer): number {
  return parse(envelope).version;
}

/**
 * Re-wraps the data key under the newest master key. The sealed secret is carried over
 * unchanged (same nonce, tag and ciphertext), so the plaintext is provably the same; only the
 * header and the wrapped key change. Returns the input unchanged when it is already current.
 */
export function rewrap(keyring: Keyring, envelope: Buffer, aad: string): Buffer {
  const parsed = parse(envelope);
  const newest = keyring.newest();
  if (parsed.version === newest.version) return envelope;
  const recordAad = Buffer.from(aad, 'utf8');
  const dataKey = unwrapKey(keyring, parsed, recordAad);
  try {
    const head = header(newest.version);
    const wrapped = seal(newest.key, dataKey, Buffer.concat([head, recordAad]));
    return Buffer.concat([head, wrapped, envelope.subarray(HEADER_LENGTH + WRAP_LENGTH)]);
  } finally {
    dataKey.fill(0);
  }
}
