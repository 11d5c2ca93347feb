// Verify one Latch access token with a Node library, as a service written in Node would.
// Input (stdin, JSON): {library, token, issuer, audience, jwks_uri, algorithms}.
// Output (stdout, JSON): {ok: true, claims, header} or {ok: false, error}; exit 0 / 1.
// Each library checks issuer, audience and typ (at+jwt): by its own option where it has one,
// by hand where it has none (jsonwebtoken never looks at typ).
import { createPublicKey } from "node:crypto";
import * as jose from "jose";
import jsonwebtoken from "jsonwebtoken";
import * as oauth from "oauth4webapi";

const input = JSON.parse(await new Promise((resolve) => {
  let text = "";
  process.stdin.on("data", (chunk) => (text += chunk));
  process.stdin.on("end", () => resolve(text));
}));
const { library, token, issuer, audience, jwks_uri, algorithms } = input;

async function withJose() {
  const jwks = jose.createRemoteJWKSet(new URL(jwks_uri));
  const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, {
    issuer, audience, algorithms, typ: "at+jwt",
  });
  return { claims: payload, header: protectedHeader };
}

async function withJsonwebtoken() {
  // jsonwebtoken takes one key, not a JWKS: pick it by kid from a fresh fetch.
  const { kid } = JSON.parse(Buffer.from(token.split(".")[0], "base64url"));
  const { keys } = await (await fetch(jwks_uri)).json();
  const jwk = keys.find((k) => k.kid === kid);
  if (!jwk) throw new Error(`no key ${kid} in the JWKS`);
  const key = createPublicKey({ key: jwk, format: "jwk" });
  const { header, payload } = jsonwebtoken.verify(token, key, {
    issuer, audience, algorithms, complete: true,
  });
  if (header.typ !== "at+jwt") throw new Error(`typ is ${header.typ}`);
  return { claims: payload, header };
}

async function withOauth4webapi() {
  // RFC 9068's strict validator, as a resource server runs it on a bearer token. Latch's test
  // instance is plain http on loopback, hence allowInsecureRequests for the JWKS fetch.
  const as = { issuer, jwks_uri };
  const request = new Request("https://service.example.com/api", {
    headers: { authorization: `Bearer ${token}` },
  });
  const claims = await oauth.validateJwtAccessToken(as, request, audience, {
    signingAlgorithms: algorithms,
    [oauth.allowInsecureRequests]: true,
  });
  return { claims, header: JSON.parse(Buffer.from(token.split(".")[0], "base64url")) };
}

const libraries = { jose: withJose, jsonwebtoken: withJsonwebtoken, oauth4webapi: withOauth4webapi };
try {
  const result = await libraries[library]();
  process.stdout.write(JSON.stringify({ ok: true, ...result }));
} catch (error) {
  process.stdout.write(JSON.stringify({ ok: false, error: `${error.name}: ${error.message}` }));
  process.exitCode = 1;
}
