import { Injectable } from '@nestjs/common';
import { conflict } from '../common/problem';
import { AlertChannelsService } from './alert-channels.service';
import { AlertDeliveryService } from './alert-delivery.service';
import { testMessage } from './alert-messages';

/** "Send test": one message through the real delivery path, answered with how it went. */
@Injectable()
export class ChannelTestService {
  constructor(
    private readonly channels: AlertChannelsService,
    private readonly delivery: AlertDeliveryService,
  ) {}

  async test(id: string) {
    const channel = await this.channels.get(id);
    if (!channel.enabled) throw conflict('channel-disabled', 'Channel is disabled', 'Enable the channel to test it.');
    const result = await this.delivery.sendNow(id, testMessage(channel.name));
    return {
      channelId: id,
      deliveryId: result.id,
      delivered: result.status === 'delivered',
      status: result.status,
      statusCode: result.statusCode,
      error: result.error,
    };
  }
}
