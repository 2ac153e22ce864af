// A real OpenID provider (npm oidc-provider) for the sidecar's upstream-login tests.
//
//   PORT=9000 REDIRECT_URIS=http://127.0.0.1:8080/oauth/test/callback node provider.mjs
//
// Client `sidecar` / `sidecar-secret` (client_secret_basic, PKCE required). Interactions are
// answered automatically for the account the test selects, so no browser UI is needed:
//   GET /__test/mode?account=alice|mallory    who signs in next
//   GET /__test/mode?foreign_audience=true    the token endpoint's ID token is re-issued, with
//                                             the provider's own key, for another audience
//   GET /__test/mode?rotated=true             key rotation: the JWKS now also lists a second key,
//                                             and ID tokens are re-signed with it
// (alice's e-mail is verified; mallory claims the same address unverified).
import Provider from 'oidc-provider';
import * as jose from 'jose';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const redirectUris = (process.env.REDIRECT_URIS || '').split(',').filter(Boolean);

const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
const jwk = { ...(await jose.exportJWK(privateKey)), kid: 'test-key', alg: 'RS256', use: 'sig' };
const { privateKey: nextKey, publicKey: nextPublic } = await jose.generateKeyPair('RS256', { extractable: true });
const nextJwk = { ...(await jose.exportJWK(nextPublic)), kid: 'test-key-2', alg: 'RS256', use: 'sig' };

const accounts = {
  alice: { sub: 'alice', email: 'alice@example.com', email_verified: true, name: 'Alice Example' },
  mallory: { sub: 'mallory', email: 'alice@example.com', email_verified: false, name: 'Mallory' },
};
const mode = { account: 'alice', foreign_audience: 'false', rotated: 'false' };

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'sidecar',
    client_secret: 'sidecar-secret',
    redirect_uris: redirectUris,
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [jwk] },
  pkce: { required: () => true },
  cookies: { keys: ['test-only-cookie-key'] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  findAccount: async (ctx, id) => accounts[id] && { accountId: id, claims: async () => accounts[id] },
});

provider.use(async (ctx, next) => {
  if (ctx.path === '/__test/mode') {
    Object.assign(mode, Object.fromEntries(new URLSearchParams(ctx.querystring)));
    ctx.body = mode;
    return;
  }
  if (ctx.path.startsWith('/interaction/')) {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    let result;
    if (details.prompt.name === 'login') {
      result = { login: { accountId: mode.account } };
    } else {
      const grant = new provider.Grant({
        accountId: details.session.accountId,
        clientId: details.params.client_id,
      });
      grant.addOIDCScope(details.params.scope);
      result = { consent: { grantId: await grant.save() } };
    }
    const to = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: true });
    ctx.redirect(to);
    return;
  }
  await next();
  if (ctx.path === '/jwks' && mode.rotated === 'true' && ctx.body && ctx.body.keys) {
    ctx.body = { keys: [...ctx.body.keys, nextJwk] };
  }
  if (ctx.path === '/token' && ctx.body && ctx.body.id_token) {
    const claims = jose.decodeJwt(ctx.body.id_token);
    if (mode.foreign_audience === 'true') {
      ctx.body.id_token = await new jose.SignJWT({ ...claims, aud: 'another-client' })
        .setProtectedHeader({ alg: 'RS256', kid: 'test-key' })
        .sign(privateKey);
    } else if (mode.rotated === 'true') {
      ctx.body.id_token = await new jose.SignJWT(claims)
        .setProtectedHeader({ alg: 'RS256', kid: 'test-key-2' })
        .sign(nextKey);
    }
  }
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
