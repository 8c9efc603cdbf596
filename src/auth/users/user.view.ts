import type { User } from './user.entity';

/** The JSON shape of a user; never includes the password hash. */
export interface UserView {
  id: string;
  email: string;
  role: string;
  active: boolean;
  disabledAt: string | null;
  lastSignInAt: string | null;
  createdAt: string;
}

export function toUserView(user: User): UserView {
  return {
    id: user.id,
    email: user.email,
    role: user.role,
    active: user.disabledAt === null,
    disabledAt: user.disabledAt?.toISOString() ?? null,
    lastSignInAt: user.lastSignInAt?.toISOString() ?? null,
    createdAt: user.createdAt.toISOString(),
  };
}
