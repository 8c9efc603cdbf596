import { Controller, Get, Inject, Req, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { timingSafeEqual, createHash } from 'node:crypto';
import ipaddr from 'ipaddr.js';
import { Public } from '../auth/decorators';
import { clientIp } from '../common/http';
import { ProblemException } from '../common/problem';
import { KEYWARD_CONFIG } from '../config/config.constants';
import type { KeywardConfig } from '../config/config';
import { MetricsService } from './metrics.service';

const digest = (value: string) => createHash('sha256').update(value).digest();

function isLoopback(ip: string | null): boolean {
  if (!ip || !ipaddr.isValid(ip)) return false;
  const parsed = ipaddr.process(ip);
  return parsed.range() === 'loopback';
}

/**
 * Prometheus scrapes `GET /metrics`. With KEYWARD_METRICS_TOKEN set it needs that bearer token
 * from anywhere; without, it answers only clients on this machine (loopback, as Express sees
 * the client, so KEYWARD_TRUST_PROXY applies).
 */
@ApiExcludeController()
@Controller('metrics')
export class MetricsController {
  private readonly token?: Buffer;

  constructor(
    private readonly metrics: MetricsService,
    @Inject(KEYWARD_CONFIG) config: KeywardConfig,
  ) {
    this.token = config.metricsToken ? digest(config.metricsToken) : undefined;
  }

  @Get()
  @Public()
  async scrape(@Req() req: Request, @Res() res: Response): Promise<void> {
    this.authorize(req);
    const { contentType, body } = await this.metrics.scrape();
    res.setHeader('Cache-Control', 'no-store');
    res.type(contentType).send(body);
  }

  private authorize(req: Request): void {
    if (this.token) {
      const [scheme, value] = (req.get('authorization') ?? '').split(' ', 2);
      if (scheme?.toLowerCase() === 'bearer' && value && timingSafeEqual(digest(value), this.token)) return;
      throw new ProblemException(
        401,
        'unauthorized',
        'Unauthorized',
        'GET /metrics needs the bearer token set in KEYWARD_METRICS_TOKEN.',
      );
    }
    if (isLoopback(clientIp(req))) return;
    throw new ProblemException(
      403,
      'forbidden',
      'Forbidden',
      '/metrics answers only on this machine; set KEYWARD_METRICS_TOKEN to scrape it from elsewhere.',
    );
  }
}
