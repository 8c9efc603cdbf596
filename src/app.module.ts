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
import { DatabaseModule } from './database/database.module';
import { LifecycleModule } from './lifecycle/lifecycle.module';
import { HealthController } from './health/health.controller';
import { AlertsModule } from './alerts/alerts.module';
import { AlertingModule } from './alerts/alerting.module';
import { GatewayModule } from './gateway/gateway.module';
import { KeysModule } from './keys/keys.module';
import { LimitsModule } from './limits/limits.module';
import { UsageModule } from './usage/usage.module';
import { ReportsModule } from './reports/reports.module';
import { PluginSystemModule } from './plugin-system/plugin-system.module';
import { RotationModule } from './rotation/rotation.module';
import { MetricsModule } from './metrics/metrics.module';
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
        // Migrations ran before the module was built, under an advisory lock (see createApp).
        TypeOrmModule.forRoot(dataSourceOptions(runtime.databaseUrl)),
        EventEmitterModule.forRoot(),
        ScheduleModule.forRoot(),
        LifecycleModule,
        DatabaseModule,
        CryptoModule,
        PluginSystemModule.forRoot(runtime.plugins),
        AuditModule,
        AuthModule,
        ConsoleModule,
        AlertsModule,
        UsageModule,
        LimitsModule,
        ReportsModule,
        KeysModule,
        RotationModule,
        AccessTokensModule,
        GatewayModule,
        AlertingModule,
        MetricsModule,
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
