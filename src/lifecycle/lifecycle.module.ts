import { Global, Module } from '@nestjs/common';
import { ShutdownService } from './shutdown.service';

/** Global: whatever buffers work registers a shutdown step (see ShutdownService). */
@Global()
@Module({ providers: [ShutdownService], exports: [ShutdownService] })
export class LifecycleModule {}
