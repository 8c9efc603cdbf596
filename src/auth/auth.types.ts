import type { AppAbility } from './abilities';
import type { Role } from './roles';

/** The signed-in principal as guards attach it to the request. */
export interface AuthUser {
  id: string;
  email: string;
  role: Role;
  /** How this request was authenticated. */
  via: 'session' | 'jwt';
}

declare module 'express-serve-static-core' {
  interface Request {
    authUser?: AuthUser;
    ability?: AppAbility;
  }
}

declare module 'express-session' {
  interface SessionData {
    userId?: string;
    /** When this session was created (ms), for the absolute timeout. */
    createdAt?: number;
    flash?: { kind: 'success' | 'error'; message: string };
  }
}
