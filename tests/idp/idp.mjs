// A real OpenID provider for the console's tests: the certified
// `oidc-provider` package (npm), over HTTPS with the test's certificate, with
// one client (the console under test), PKCE required, RP-initiated logout, and
// its development login pages (any login, any password: the login becomes the
// account's `sub`, and `LOGIN@ccas-rodez.example` its email).
//
// Arguments: KEY.pem CERT.pem CLIENT_ID CLIENT_SECRET REDIRECT_URI HOME_URI.
// Prints `listening PORT` once it serves on 127.0.0.1:PORT.
import fs from 'node:fs';
import https from 'node:https';
import Provider from 'oidc-provider';

const [key, cert, clientId, clientSecret, redirectUri, home] = process.argv.slice(2);
const server = https.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) });
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const provider = new Provider(`https://127.0.0.1:${port}`, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      post_logout_redirect_uris: [home],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    pkce: { required: () => true },
    claims: { openid: ['sub'], email: ['email', 'email_verified'] },
    features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
    cookies: { keys: ['maillon-test-provider-cookie-key'] },
    findAccount: async (ctx, sub) => ({
      accountId: sub,
      claims: async () => ({ sub, email: `${sub}@ccas-rodez.example`, email_verified: true }),
    }),
  });
  server.on('request', provider.callback());
  console.log(`listening ${port}`);
});
