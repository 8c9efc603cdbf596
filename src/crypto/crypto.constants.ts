/** Injection token for the master `Keyring`, loaded before the application module is built. */
export const KEYRING = Symbol('KEYRING');
