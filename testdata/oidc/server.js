// node-oidc-provider (an OpenID Certified provider, from npm) for pigeon's
// OAuth2Refresher interop test (oauth2_interop_test.go).
// Listens on 127.0.0.1:0 and prints "PORT <n>" on stdout; the issuer is
// http://127.0.0.1:<n>.
// - Three clients, all with authorization_code + refresh_token and the
//   redirect URI http://127.0.0.1/cb:
//     "public" (token_endpoint_auth_method none, PKCE required),
//     "basic"  (client_secret_basic, secret "basic-secret"),
//     "post"   (client_secret_post,  secret "post-secret").
// - Every refresh rotates the refresh token; presenting a consumed one is
//   reuse: the provider revokes the whole grant (invalid_grant).
// - Access tokens live 60 s; a refresh token is issued for every
//   authorization code (no offline_access consent needed).
// - The interaction (login + consent) is scripted: /interaction/:uid signs
//   in the account "test-user" and grants the requested scopes, so a client
//   following redirects with a cookie jar gets its code without a form.
// Exits when stdin closes (the test's process ends or kills it).
import http from "node:http";
import Provider, { errors } from "oidc-provider";

const redirect = "http://127.0.0.1/cb";
const common = {
  redirect_uris: [redirect],
  grant_types: ["authorization_code", "refresh_token"],
  response_types: ["code"],
};

const server = http.createServer();
server.listen(0, "127.0.0.1", () => {
  const port = server.address().port;
  const provider = new Provider(`http://127.0.0.1:${port}`, {
    clients: [
      { ...common, client_id: "public", token_endpoint_auth_method: "none" },
      { ...common, client_id: "basic", client_secret: "basic-secret", token_endpoint_auth_method: "client_secret_basic" },
      { ...common, client_id: "post", client_secret: "post-secret", token_endpoint_auth_method: "client_secret_post" },
    ],
    features: { devInteractions: { enabled: false }, revocation: { enabled: true } },
    rotateRefreshToken: true,
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed("refresh_token"),
    ttl: { AccessToken: 60, AuthorizationCode: 60, RefreshToken: 3600, Grant: 3600, Session: 3600, Interaction: 60 },
    findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
  });
  // oidc-provider accepts a client's secret in either place whatever the
  // client registered; stricter providers refuse the method the client is
  // not registered for. "post" gets that strictness, answered with the
  // provider's own error and status (401 invalid_client), so a client has
  // to find the right method.
  provider.use(async (ctx, next) => {
    const basic = (ctx.get("authorization") || "").toLowerCase().startsWith("basic ");
    if (ctx.path === "/token" && basic) {
      const id = decodeURIComponent(Buffer.from(ctx.get("authorization").slice(6), "base64").toString("utf8").split(":")[0]);
      if (id === "post") {
        const err = new errors.InvalidClientAuth("client_secret_basic is not the registered token_endpoint_auth_method (client_secret_post)");
        ctx.status = err.statusCode;
        ctx.set("WWW-Authenticate", `Basic realm="${provider.issuer}"`);
        ctx.body = { error: err.message, error_description: err.error_description };
        return;
      }
    }
    await next();
  });
  // The provider's own log of failures, for a test that needs to read why.
  provider.on("grant.error", (ctx, err) => process.stderr.write(`oidc grant.error: ${err.message}: ${err.error_detail || ""}\n`));
  provider.on("server_error", (ctx, err) => process.stderr.write(`oidc server_error: ${err.stack}\n`));
  const callback = provider.callback();
  server.on("request", async (req, res) => {
    if (!req.url.startsWith("/interaction/")) {
      callback(req, res);
      return;
    }
    try {
      const details = await provider.interactionDetails(req, res);
      let result;
      if (details.prompt.name === "login") {
        result = { login: { accountId: "test-user" } };
      } else {
        const grant = details.grantId
          ? await provider.Grant.find(details.grantId)
          : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
        const missing = details.prompt.details;
        if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(" "));
        if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
        for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
          grant.addResourceScope(indicator, scopes.join(" "));
        }
        result = { consent: { grantId: await grant.save() } };
      }
      await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
    } catch (err) {
      process.stderr.write(`oidc interaction: ${err.stack}\n`);
      res.statusCode = 500;
      res.end(String(err));
    }
  });
  process.stdout.write(`PORT ${port}\n`);
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
