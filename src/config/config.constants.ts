/** Injection token for the validated `KeywardConfig`. */
export const KEYWARD_CONFIG = Symbol('KEYWARD_CONFIG');
