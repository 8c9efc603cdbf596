import { Global, Module } from '@nestjs/common';
import { getDataSourceToken } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { KEYRING } from './crypto.constants';
import { Keyring } from './keyring';
import { SecretsService } from './secrets.service';

/** Global: every feature that stores a secret seals it through SecretsService. */
@Global()
@Module({
  providers: [
    {
      provide: SecretsService,
      inject: [KEYRING, getDataSourceToken()],
      useFactory: (keyring: Keyring, dataSource: DataSource) => SecretsService.create(keyring, dataSource),
    },
  ],
  exports: [SecretsService],
})
export class CryptoModule {}
