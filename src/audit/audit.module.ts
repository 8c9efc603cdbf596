import { Global, Module } from '@nestjs/common';
import { APP_INTERCEPTOR } from '@nestjs/core';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { shareAmbientTransactions } from '../database/ambient-transaction';
import { AuditCheckpointService } from './audit-checkpoints';
import { AuditInterceptor } from './audit.interceptor';
import { AuditService } from './audit.service';
import { AuditController } from './audit.controller';
import { AuditAdminController } from './audit.admin.controller';

/** Global: guards and services anywhere record through AuditService. */
@Global()
@Module({
  controllers: [AuditController, AuditAdminController],
  providers: [AuditService, AuditCheckpointService, { provide: APP_INTERCEPTOR, useClass: AuditInterceptor }],
  exports: [AuditService, AuditCheckpointService],
})
export class AuditModule {
  constructor(@InjectDataSource() dataSource: DataSource) {
    // Before any request: the audit interceptor's transaction is shared by every service.
    shareAmbientTransactions(dataSource);
  }
}
