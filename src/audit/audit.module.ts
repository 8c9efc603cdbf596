import { Global, Module } from '@nestjs/common';
import { APP_INTERCEPTOR } from '@nestjs/core';
import { AuditInterceptor } from './audit.interceptor';
import { AuditService } from './audit.service';
import { AuditController } from './audit.controller';
import { AuditAdminController } from './audit.admin.controller';

/** Global: guards and services anywhere record through AuditService. */
@Global()
@Module({
  controllers: [AuditController, AuditAdminController],
  providers: [AuditService, { provide: APP_INTERCEPTOR, useClass: AuditInterceptor }],
  exports: [AuditService],
})
export class AuditModule {}
