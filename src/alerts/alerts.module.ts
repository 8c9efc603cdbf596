import { Global, Module } from '@nestjs/common';
import { AlertEventsService } from './alert-events.service';

/** Global: any module may raise an alert event. */
@Global()
@Module({ providers: [AlertEventsService], exports: [AlertEventsService] })
export class AlertsModule {}
