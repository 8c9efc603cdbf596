import type { Request, Response } from 'express';
import { isHtmx } from './http';

export interface RenderOptions {
  /** The partial (under views/partials) that htmx requests get instead of the whole page. */
  partial?: string;
  status?: number;
}

/** What every console template can rely on: the user, the CSRF token, the flash message. */
export function baseContext(req: Request): Record<string, unknown> {
  const flash = req.session?.flash;
  if (flash) delete req.session.flash;
  const user = req.authUser;
  return {
    user,
    csrfToken: typeof req.csrfToken === 'function' && req.session ? req.csrfToken() : undefined,
    flash,
    can:
      user && req.ability
        ? {
            readUsers: req.ability.can('read', 'User'),
            manageUsers: req.ability.can('create', 'User'),
            readAudit: req.ability.can('read', 'AuditLog'),
          }
        : {},
  };
}

/**
 * Renders a console page, or just its partial for htmx. `Vary: HX-Request` keeps caches from
 * serving a fragment where a page was asked for.
 */
export function render(
  req: Request,
  res: Response,
  page: string,
  data: Record<string, unknown>,
  options: RenderOptions = {},
): void {
  res.setHeader('Vary', 'HX-Request');
  res.status(options.status ?? 200);
  const context = { ...baseContext(req), ...data };
  if (options.partial && isHtmx(req)) {
    res.render(`partials/${options.partial}`, { ...context, layout: false });
    return;
  }
  res.render(`pages/${page}`, context);
}

export function flash(req: Request, kind: 'success' | 'error', message: string): void {
  if (req.session) req.session.flash = { kind, message };
}
