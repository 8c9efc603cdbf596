import { DynamicModule, Global, Module } from '@nestjs/common';
import { APP_FILTER, APP_PIPE } from '@nestjs/core';
import { EventEmitterModule } from '@nestjs/event-emitter';
import { ScheduleModule } from '@nestjs/schedule';
import { TypeOrmModule } from '@nestjs/typeorm';
import { LoggerModule } from 'nestjs-pino';
import { AccessTokensModule } from './access-tokens/access-tokens.module';
import { AuditModule } from './audit/audit.module';
import { AuthModule } from './auth/auth.module';
import { loggerParams } from './common/logging';
import { ProblemFilter } from './common/problem.filter';
import { createValidationPipe } from './common/validation';
import { KEYWARD_CONFIG } from './config/config.constants';
import { ConsoleModule } from './console/console.module';
import { KEYRING } from './crypto/crypto.constants';
import { CryptoModule } from './crypto/crypto.module';
import { dataSourceOptions } from './database/data-source-options';
import { HealthController } from './health/health.controller';
import { AlertsModule } from './alerts/alerts.module';
import { GatewayModule } from './gateway/gateway.module';
import { KeysModule } from './keys/keys.module';
import { UsageModule } from './usage/usage.module';
import { PluginSystemModule } from './plugin-system/plugin-system.module';
import { RotationModule } from './rotation/rotation.module';
import { RUNTIME_INFO, type KeywardRuntime } from './runtime';
import { SecurityModule } from './security/security.module';

/** Makes what main.ts established (config, keyring, runtime facts) injectable everywhere. */
@Global()
@Module({})
class RuntimeModule {
  static forRoot(runtime: KeywardRuntime): DynamicModule {
    return {
      module: RuntimeModule,
      providers: [
        { provide: KEYWARD_CONFIG, useValue: runtime.config },
        { provide: KEYRING, useValue: runtime.keyring },
        { provide: RUNTIME_INFO, useValue: runtime.info },
      ],
      exports: [KEYWARD_CONFIG, KEYRING, RUNTIME_INFO],
    };
  }
}

@Module({})
export class AppModule {
  static forRoot(runtime: KeywardRuntime): DynamicModule {
    return {
      module: AppModule,
      imports: [
        RuntimeModule.forRoot(runtime),
        LoggerModule.forRoot(loggerParams(runtime.config, runtime.logStream)),
        TypeOrmModule.forRoot({ ...dataSourceOptions(runtime.databaseUrl), migrationsRun: true }),
        EventEmitterModule.forRoot(),
        ScheduleModule.forRoot(),
        CryptoModule,
        PluginSystemModule.forRoot(runtime.plugins),
        AuditModule,
        AuthModule,
        ConsoleModule,
        AlertsModule,
        UsageModule,
        KeysModule,
        RotationModule,
        AccessTokensModule,
        GatewayModule,
        SecurityModule,
      ],
      controllers: [HealthController],
      providers: [
        { provide: APP_FILTER, useClass: ProblemFilter },
        { provide: APP_PIPE, useFactory: createValidationPipe },
      ],
    };
  }
}
