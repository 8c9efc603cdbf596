import { SetMetadata } from '@nestjs/common';

export const REQUIRES_MFA = Symbol('REQUIRES_MFA');
export const SKIP_MFA_ENROLMENT = Symbol('SKIP_MFA_ENROLMENT');

/**
 * Marks a sensitive operation: the MfaInterceptor lets it through only with a second factor
 * verified within the last KEYWARD_MFA_STEP_UP_MINUTES (or a code sent with the request, in
 * the `x-keyward-mfa` header or, from a console form, the `mfaPasscode` field).
 *
 * Put it on the handler (JSON and console routes alike), next to `@CheckPolicies`.
 */
export const RequiresMfa = () => SetMetadata(REQUIRES_MFA, true);

/**
 * Console routes that stay reachable while a user who must enrol has not yet (the enrolment
 * pages themselves, sign-out, the password change).
 */
export const SkipMfaEnrolment = () => SetMetadata(SKIP_MFA_ENROLMENT, true);
