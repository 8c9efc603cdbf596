/** Thrown for a console request without a valid session; the filter sends people to sign in. */
export class SignInRequired extends Error {
  constructor(readonly next: string) {
    super('sign-in required');
    this.name = 'SignInRequired';
  }
}
