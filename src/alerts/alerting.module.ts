import { Module } from '@nestjs/common';
import { AlertChannelsService } from './alert-channels.service';
import { AlertConditions } from './alert-conditions';
import { AlertDeliveryService } from './alert-delivery.service';
import { AlertEvaluator } from './alert-evaluator';
import { AlertRulesService } from './alert-rules.service';
import { AlertsAdminController } from './alerts.admin.controller';
import { AlertChannelsController, AlertRulesController, AlertsController } from './alerts.controller';
import { AlertsService } from './alerts.service';
import { ChannelTestService } from './channel-test.service';
import { OpenAlertsInterceptor } from './open-alerts.interceptor';
import { APP_INTERCEPTOR } from '@nestjs/core';

/**
 * Alert rules, their evaluation, channels and the alert history. Separate from AlertsModule
 * (which only raises events, for everyone) because it reads usage, keys and tokens itself.
 */
@Module({
  controllers: [AlertRulesController, AlertChannelsController, AlertsController, AlertsAdminController],
  providers: [
    AlertRulesService,
    AlertChannelsService,
    AlertConditions,
    AlertDeliveryService,
    AlertEvaluator,
    AlertsService,
    ChannelTestService,
    { provide: APP_INTERCEPTOR, useClass: OpenAlertsInterceptor },
  ],
  exports: [AlertsService, AlertEvaluator, AlertDeliveryService],
})
export class AlertingModule {}
