import type { Request, Response } from 'express';

/** Paths whose clients are programs (JSON, problem+json), not people in the console. */
const MACHINE_PREFIXES = ['/api/', '/health', '/v1/', '/proxy/', '/metrics'];

export function isMachineRequest(req: Request): boolean {
  const path = req.path ?? req.url;
  return MACHINE_PREFIXES.some((p) => path === p.replace(/\/$/, '') || path.startsWith(p));
}

export function isHtmx(req: Request): boolean {
  return req.get('hx-request') === 'true';
}

export function clientIp(req: Request): string | null {
  return req.ip ?? req.socket?.remoteAddress ?? null;
}

export function userAgent(req: Request): string | null {
  const ua = req.get('user-agent');
  return ua ? ua.slice(0, 512) : null;
}

/** Redirect that works for both plain browser navigation and htmx requests. */
export function redirect(req: Request, res: Response, location: string): void {
  if (isHtmx(req)) {
    res.setHeader('HX-Redirect', location);
    res.status(204).end();
    return;
  }
  res.redirect(303, location);
}

/** One cookie from the request (Keyward reads few, so there is no cookie-parsing middleware). */
export function readCookie(req: Request, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) {
      try {
        return decodeURIComponent(part.slice(eq + 1).trim());
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}
