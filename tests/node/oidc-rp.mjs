// A strict OpenID relying party, written with oauth4webapi as a Node app would be, against Latch.
// Input: argv[2] is JSON {issuer, client_id, client_secret?, redirect_uri, alg}.
// Protocol: prints one JSON line {authorize_url}; reads one line from stdin, the URL Latch sent
// the browser back to; then runs the code exchange, userinfo, an RFC 9068 access-token check,
// a refresh, a revocation and a refresh after it, and prints one JSON line with the results.
// Every oauth4webapi check stays on (iss in the response per RFC 9207, state, nonce, PKCE,
// ID token claims); only plain http on loopback is allowed, for the test's Latch.
import * as readline from "node:readline";
import * as oauth from "oauth4webapi";

const input = JSON.parse(process.argv[2]);
const options = { [oauth.allowInsecureRequests]: true };
const issuer = new URL(input.issuer);
const as = await oauth.processDiscoveryResponse(
  issuer,
  await oauth.discoveryRequest(issuer, options),
);
const client = { client_id: input.client_id, id_token_signed_response_alg: input.alg };
const auth = input.client_secret ? oauth.ClientSecretBasic(input.client_secret) : oauth.None();

const verifier = oauth.generateRandomCodeVerifier();
const state = oauth.generateRandomState();
const nonce = oauth.generateRandomNonce();
const url = new URL(as.authorization_endpoint);
url.searchParams.set("client_id", client.client_id);
url.searchParams.set("redirect_uri", input.redirect_uri);
url.searchParams.set("response_type", "code");
url.searchParams.set("scope", "openid email");
url.searchParams.set("state", state);
url.searchParams.set("nonce", nonce);
url.searchParams.set("code_challenge", await oauth.calculatePKCECodeChallenge(verifier));
url.searchParams.set("code_challenge_method", "S256");
console.log(JSON.stringify({ authorize_url: url.href }));

const lines = readline.createInterface({ input: process.stdin });
const callback = new URL((await lines[Symbol.asyncIterator]().next()).value.trim());
lines.close();

async function refused(promise) {
  try {
    await promise;
    return null;
  } catch (e) {
    return e.error ?? e.code ?? String(e);
  }
}

const out = {};
// A response with another state must be refused by the client, before any exchange.
out.wrong_state = await refused(
  (async () => oauth.validateAuthResponse(as, client, callback, "another-state"))(),
);
const params = oauth.validateAuthResponse(as, client, callback, state);
const exchanged = await oauth.authorizationCodeGrantRequest(
  as, client, auth, params, input.redirect_uri, verifier, options,
);
const tokens = await oauth.processAuthorizationCodeResponse(as, client, exchanged, {
  expectedNonce: nonce,
  requireIdToken: true,
});
out.id_token = oauth.getValidatedIdTokenClaims(tokens);

const info = await oauth.userInfoRequest(as, client, tokens.access_token, options);
out.userinfo = await oauth.processUserInfoResponse(as, client, out.id_token.sub, info);

// The access token as a resource server checks it (RFC 9068: signature from the JWKS, typ,
// iss, aud, client_id, exp).
const asResource = new Request(as.userinfo_endpoint, {
  headers: { authorization: `Bearer ${tokens.access_token}` },
});
out.access_token = await oauth.validateJwtAccessToken(as, asResource, client.client_id, options);

const again = await oauth.refreshTokenGrantRequest(as, client, auth, tokens.refresh_token, options);
const refreshed = await oauth.processRefreshTokenResponse(as, client, again);
out.rotated = refreshed.refresh_token !== tokens.refresh_token;

const revoked = await oauth.revocationRequest(as, client, auth, refreshed.refresh_token, options);
await oauth.processRevocationResponse(revoked);
out.after_revocation = await refused(
  (async () => oauth.processRefreshTokenResponse(
    as, client,
    await oauth.refreshTokenGrantRequest(as, client, auth, refreshed.refresh_token, options),
  ))(),
);
console.log(JSON.stringify(out));
