import { Logger } from '@nestjs/common';
import { createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { AppSecret } from './app-secret.entity';
import { decrypt, encrypt, envelopeVersion, rewrap } from './envelope';
import { Keyring } from './keyring';

const ROOT = 'root';
const aadFor = (name: string) => `app_secret:${name}`;

/**
 * The vault's seal and the server's own keys.
 *
 * A random root secret is created once, sealed with the master key and stored in the database,
 * so every instance derives the same JWT, session and audit-chain keys from it (HKDF with a
 * purpose label) while a copy of the database alone reveals none of them.
 *
 * Built by an async factory (see CryptoModule) so that every consumer, including passport
 * strategies that need a key in their constructor, receives it initialised.
 */
export class SecretsService {
  private readonly logger = new Logger(SecretsService.name);
  private root?: Buffer;
  private readonly derived = new Map<string, Buffer>();

  constructor(
    private readonly keyring: Keyring,
    private readonly dataSource: DataSource,
  ) {}

  static async create(keyring: Keyring, dataSource: DataSource): Promise<SecretsService> {
    const service = new SecretsService(keyring, dataSource);
    await service.init();
    return service;
  }

  private async init(): Promise<void> {
    const repo = this.dataSource.getRepository(AppSecret);
    // Two instances starting together both try to insert; the primary key lets one win.
    await repo
      .createQueryBuilder()
      .insert()
      .values({ name: ROOT, envelope: encrypt(this.keyring, randomBytes(32), aadFor(ROOT)) })
      .orIgnore()
      .execute();
    const stored = await repo.findOneByOrFail({ name: ROOT });
    this.root = decrypt(this.keyring, stored.envelope, aadFor(ROOT));

    if (envelopeVersion(stored.envelope) !== this.keyring.newest().version) {
      await repo.update({ name: ROOT }, { envelope: rewrap(this.keyring, stored.envelope, aadFor(ROOT)) });
      this.logger.log(`Re-wrapped the server secret to master key version ${this.keyring.newest().version}`);
    }
  }

  /** A 32-byte key for one purpose, the same on every instance. */
  derive(purpose: string): Buffer {
    if (!this.root) throw new Error('SecretsService used before initialisation');
    let key = this.derived.get(purpose);
    if (!key) {
      key = Buffer.from(hkdfSync('sha256', this.root, 'keyward', `keyward/${purpose}`, 32));
      this.derived.set(purpose, key);
    }
    return key;
  }

  /** HMAC-SHA256 under a derived key, hex; for fingerprints and chains. */
  hmac(purpose: string, data: string | Buffer): string {
    return createHmac('sha256', this.derive(purpose)).update(data).digest('hex');
  }

  seal(plaintext: string | Buffer, aad: string): Buffer {
    return encrypt(this.keyring, plaintext, aad);
  }

  open(envelope: Buffer, aad: string): Buffer {
    return decrypt(this.keyring, envelope, aad);
  }

  rewrap(envelope: Buffer, aad: string): Buffer {
    return rewrap(this.keyring, envelope, aad);
  }

  get masterKeyVersion(): number {
    return this.keyring.newest().version;
  }
}
