import type { AppAbility } from './abilities';
import type { Role } from './roles';

/** The signed-in principal as guards attach it to the request. */
export interface AuthUser {
  id: string;
  email: string;
  role: Role;
  /** How this request was authenticated. */
  via: 'session' | 'jwt';
  /** JWT only: when the token was minted with a second factor (ms), for step-up. */
  mfaAt?: number;
  /** An owner reset the password: the console sends this user to change it first. */
  mustChangePassword?: boolean;
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
    /** The user's token version at sign-in; a newer one on the user ends this session. */
    tokenVersion?: number;
    /** When a second factor was last verified in this session (ms), for step-up. */
    mfaVerifiedAt?: number;
    /** Set at sign-in when MFA is mandatory and this user has none yet. */
    mfaEnrolmentRequired?: boolean;
    /** For the user's own list of sessions. */
    userAgent?: string | null;
    ip?: string | null;
    lastSeenAt?: number;
    via?: 'password' | 'sso';
  }
}
