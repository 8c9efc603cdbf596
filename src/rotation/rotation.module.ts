import { Module } from '@nestjs/common';
import { KeysAdminController } from '../keys/keys.admin.controller';
import { KeysModule } from '../keys/keys.module';
import { RotationController } from './rotation.controller';
import { RotationScheduler } from './rotation.scheduler';
import { RotationService } from './rotation.service';

@Module({
  imports: [KeysModule],
  controllers: [RotationController, KeysAdminController],
  providers: [RotationService, RotationScheduler],
  exports: [RotationService],
})
export class RotationModule {}
