import { Controller, Get, HttpCode } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { Public } from '../auth/decorators';
import { ProblemException } from '../common/problem';
import { DatabaseHealth } from '../database/database-health';
import { ShutdownService } from '../lifecycle/shutdown.service';

@Controller('health')
export class HealthController {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly health: DatabaseHealth,
    private readonly shutdown: ShutdownService,
  ) {}

  /** Liveness: the process answers. */
  @Get()
  @Public()
  live() {
    return { status: 'ok' };
  }

  /**
   * Readiness: the database answers within a second and the instance is not shutting down. While
   * the database is down the body says since when, and whether the gateway still serves from
   * its caches (the outage window), so a load balancer may keep sending gateway traffic.
   */
  @Get('ready')
  @Public()
  @HttpCode(200)
  async ready() {
    if (this.shutdown.draining) {
      throw new ProblemException(503, 'not-ready', 'Not ready', 'This instance is shutting down.', {
        database: this.health.up ? 'up' : 'down',
        draining: true,
      });
    }
    try {
      await Promise.race([
        this.dataSource.query('SELECT 1'),
        new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), 1000).unref()),
      ]);
      return { status: 'ready', database: 'up' };
    } catch (error) {
      this.health.reportFailure(
        error instanceof Error && error.message === 'timeout' ? new Error('query timeout') : error,
      );
      throw new ProblemException(503, 'not-ready', 'Not ready', 'The database is not reachable.', {
        database: 'down',
        downSince: this.health.downSince?.toISOString() ?? null,
        servingFromCache: this.health.canServeStale(),
      });
    }
  }
}
