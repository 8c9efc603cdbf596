import { Module } from '@nestjs/common';
import { AuthModule } from '../auth/auth.module';
import { ConsoleController } from './console.controller';
import { DashboardService } from './dashboard.service';

@Module({ imports: [AuthModule], controllers: [ConsoleController], providers: [DashboardService] })
export class ConsoleModule {}
