import { Module, OnModuleInit } from '@nestjs/common';
import { AuditService } from '../audit/audit.service';
import { KeysController } from './keys.controller';
import { KeysService } from './keys.service';

@Module({
  controllers: [KeysController],
  providers: [KeysService],
  exports: [KeysService],
})
export class KeysModule implements OnModuleInit {
  constructor(
    private readonly audit: AuditService,
    private readonly keys: KeysService,
  ) {}

  /** Audit entries about a key name it and show its masked hint. */
  onModuleInit(): void {
    this.audit.registerDescriber('ApiKey', (id) => this.keys.describe(id));
  }
}
