/*
 * A real OpenID provider (the `oidc-provider` package) on loopback, for the single sign-on
 * tests. It runs in its own Node process because the package is ESM with a deep ESM tree that
 * Jest's module loader would have to transpile; the test starts it and reads its address.
 *
 * Input (environment): OIDC_CLIENT as JSON ({ client_id, client_secret, redirect_uris,
 * post_logout_redirect_uris }) and OIDC_ACCOUNTS as JSON ({ login: claims }). Output (stdout):
 * one line `listening <issuer>`.
 *
 * devInteractions gives a login page (any login, any password: the login is the account id)
 * and a consent page, which is what the browser test clicks through.
 */
import { createServer } from 'node:http';
import Provider from 'oidc-provider';

const client = JSON.parse(process.env.OIDC_CLIENT);
const accounts = JSON.parse(process.env.OIDC_ACCOUNTS);

const server = createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      ...client,
    },
  ],
  async findAccount(_ctx, id) {
    const claims = accounts[id];
    if (!claims) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...claims }) };
  },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'groups'] },
  features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
  pkce: { required: () => true },
  cookies: { keys: ['keyward-test-only-cookie-key'] },
});
// Quiet: the dev-keys and dev-interactions warnings are expected here.
provider.on('server_error', (_ctx, err) => process.stderr.write(`oidc-provider: ${err.stack}\n`));
server.on('request', provider.callback());
process.stdout.write(`listening ${issuer}\n`);
