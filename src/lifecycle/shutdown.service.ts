import { BeforeApplicationShutdown, Inject, Injectable, Logger } from '@nestjs/common';
import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import { KEYWARD_CONFIG } from '../config/config.constants';
import type { KeywardConfig } from '../config/config';

/**
 * The order in which a stopping instance lets go of things. Each phase runs after the one
 * before it has finished:
 * - `flush`: buffered writes go to the database (usage, limit settlements, token last use);
 * - `upstream`: connections to the providers close;
 * then Nest closes the modules (the database pool last) and main.ts stops the embedded server.
 */
export type ShutdownPhase = 'flush' | 'upstream';
const PHASES: ShutdownPhase[] = ['flush', 'upstream'];

interface Step {
  name: string;
  run: () => Promise<void> | void;
}

/**
 * Ordered shutdown (issue: "SIGTERM under traffic lost usage"). On SIGTERM the HTTP server stops
 * accepting, idle keep-alive connections close, every answer sent while draining says
 * `Connection: close`, the requests in flight finish (at most `KEYWARD_SHUTDOWN_GRACE_MS`),
 * then the registered steps run phase by phase, before anything closes the database.
 */
@Injectable()
export class ShutdownService implements BeforeApplicationShutdown {
  private readonly logger = new Logger('Shutdown');
  private readonly steps = new Map<ShutdownPhase, Step[]>(PHASES.map((p) => [p, []]));
  private server: HttpServer | undefined;
  private inFlight = 0;
  private idleWaiters: (() => void)[] = [];
  private running: Promise<void> | undefined;
  /** True from the moment shutdown starts: a failure seen now is ours, not the provider's. */
  draining = false;

  constructor(@Inject(KEYWARD_CONFIG) private readonly config: KeywardConfig) {}

  /** Requests being answered right now (every route, gateway and console). */
  get active(): number {
    return this.inFlight;
  }

  /** Adds a step to a phase; steps of one phase run one after another, in registration order. */
  register(phase: ShutdownPhase, name: string, run: () => Promise<void> | void): void {
    this.steps.get(phase)!.push({ name, run });
  }

  /**
   * Counts a request from its arrival until its response closed (sent, or the client went);
   * while draining, the response asks the client to close the connection afterwards.
   * app.setup.ts calls this for every request, ahead of the gateway and Express.
   */
  onRequest(_req: IncomingMessage, res: ServerResponse): void {
    this.inFlight++;
    if (this.draining) res.shouldKeepAlive = false;
    res.once('close', () => {
      this.inFlight--;
      if (this.draining) {
        // A keep-alive socket whose answer began before draining is now idle: close it.
        setImmediate(() => this.server?.closeIdleConnections());
        if (this.inFlight === 0) for (const wake of this.idleWaiters.splice(0)) wake();
      }
    });
  }

  /** The server whose connections are drained (app.setup.ts). */
  attach(server: HttpServer): void {
    this.server = server;
  }

  /** Runs the whole sequence once; later calls wait for the first. */
  shutdown(): Promise<void> {
    this.running ??= this.sequence();
    return this.running;
  }

  /** A test app closed with `app.close()` drains too, before any module lets go of the database. */
  async beforeApplicationShutdown(): Promise<void> {
    await this.shutdown();
  }

  private async sequence(): Promise<void> {
    this.draining = true;
    const started = Date.now();
    const server = this.server;
    if (server?.listening) server.close();
    server?.closeIdleConnections();
    const graceMs = this.config.durability.shutdownGraceMs;
    if (this.inFlight > 0) {
      this.logger.log(`Waiting for ${this.inFlight} request(s) in flight (at most ${graceMs} ms)`);
      await this.idle(graceMs);
      if (this.inFlight > 0) {
        this.logger.warn(`${this.inFlight} request(s) still running after ${graceMs} ms; closing their connections`);
        server?.closeAllConnections();
      }
    }
    for (const phase of PHASES) {
      for (const step of this.steps.get(phase)!) {
        try {
          await step.run();
        } catch (error) {
          this.logger.error(`Shutdown step ${phase}/${step.name} failed: ${(error as Error).message}`);
        }
      }
    }
    this.logger.log(`Drained in ${Date.now() - started} ms`);
  }

  private idle(timeoutMs: number): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      timer.unref();
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
