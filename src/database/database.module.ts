import { Global, Module } from '@nestjs/common';
import { ChangeFeedService } from './change-feed';
import { DatabaseHealth } from './database-health';

/** Global: every cache subscribes to the change feed and asks the database's health. */
@Global()
@Module({
  providers: [DatabaseHealth, ChangeFeedService],
  exports: [DatabaseHealth, ChangeFeedService],
})
export class DatabaseModule {}
