// A real browser against a running Latchkey: headless Chromium with a CTAP2 virtual
// authenticator (internal, resident keys, user verification), driven over the DevTools
// protocol by playwright-core. Run by run.sh, which starts the server and creates the user
// and client this script is given through the environment.
//
// the setup link: sign up and enrol a passkey at once -> sign out -> autofill (conditional)
// passkey sign-in -> sign out -> usernameless passkey sign-in (button) during an OIDC
// authorization -> consent -> code -> tokens whose amr says passkey; then another user's
// password sign-in and adding a passkey on /account.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const BASE = env("BASE");
const SETUP_LINK = env("SETUP_LINK");
const EMAIL = env("EMAIL");
const PASSWORD = env("PASSWORD");
const CLIENT_ID = env("CLIENT_ID");
const CLIENT_SECRET = env("CLIENT_SECRET");
const REDIRECT = env("REDIRECT_URI");
const SHOTS = process.env.SCREENSHOTS || "";

const b64url = (buf) => Buffer.from(buf).toString("base64url");
const sha256 = async (s) =>
  b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s)));

async function shot(page, name) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
let failed = false;
let page = null;
try {
  const context = await browser.newContext({
    viewport: { width: 900, height: 900 },
    colorScheme: process.env.COLOR_SCHEME === "dark" ? "dark" : "light",
  });
  page = await context.newPage();
  // Scripts and pages must live with the strict CSP: any violation fails the test.
  const problems = [];
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(m.text());
  });
  page.on("pageerror", (e) => problems.push(String(e)));

  const cdp = await context.newCDPSession(page);
  await cdp.send("WebAuthn.enable");
  const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: {
      protocol: "ctap2",
      transport: "internal",
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });

  // 1. Sign up through the setup link: the account and its passkey at once.
  await page.goto(SETUP_LINK);
  await shot(page, "sign-up");
  assert.match(await page.textContent("h1"), /first administrator/);
  await page.fill("#email", "admin@example.com");
  await page.fill("#name", "Ada Admin");
  await Promise.all([
    page.waitForURL(`${BASE}/account`, { waitUntil: "load" }),
    page.click("#signup-passkey"),
  ]);
  await page.waitForSelector("text=admin@example.com");
  const { credentials } = await cdp.send("WebAuthn.getCredentials", { authenticatorId });
  assert.equal(credentials.length, 1, "one credential on the authenticator");
  assert.equal(credentials[0].isResidentCredential, true, "a discoverable credential");
  await shot(page, "account");

  // 2. Sign out, with the authenticator's user presence off: the sign-in page's autofill
  // request (conditional mediation) then waits instead of completing on its own.
  const presence = (enabled) =>
    cdp.send("WebAuthn.setAutomaticPresenceSimulation", { authenticatorId, enabled });
  await presence(false);
  await Promise.all([page.waitForURL(`${BASE}/login`), page.click('form[action="/account/signout"] button')]);
  await page.waitForTimeout(300);
  assert.equal(new URL(page.url()).pathname, "/login", "still signed out");

  // 3. Autofill: with presence on, the page's conditional request (what the username
  // field's passkey suggestion answers) completes and signs in without a username or a click
  // on the button.
  await presence(true);
  await Promise.all([page.waitForURL(`${BASE}/account`), page.reload()]);
  await presence(false);
  await Promise.all([page.waitForURL(`${BASE}/login`), page.click('form[action="/account/signout"] button')]);

  // 4. An OIDC authorization: usernameless passkey sign-in (no email typed), consent, code.
  const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
  const auth = new URL(`${BASE}/authorize`);
  auth.search = new URLSearchParams({
    response_type: "code",
    client_id: CLIENT_ID,
    redirect_uri: REDIRECT,
    scope: "openid email",
    state: "browser-state",
    nonce: "browser-nonce",
    code_challenge: await sha256(verifier),
    code_challenge_method: "S256",
  }).toString();
  let callback = null;
  await page.route(`${REDIRECT}**`, (route) => {
    callback = route.request().url();
    route.fulfill({ status: 200, contentType: "text/plain", body: "back at the client" });
  });
  await page.goto(auth.toString());
  await page.waitForSelector("#passkey-signin:not([hidden])");
  assert.equal(await page.inputValue("#email"), "", "no username typed");
  await presence(true);
  await page.click("#passkey-signin");
  await page.waitForSelector('button[value="allow"]');
  await shot(page, "consent");
  await page.click('button[value="allow"]');
  await page.waitForURL(`${REDIRECT}**`);
  assert.ok(callback, "the browser came back to the client");
  const back = new URL(callback);
  assert.equal(back.searchParams.get("state"), "browser-state");
  const code = back.searchParams.get("code");
  assert.ok(code, "a code");

  // 5. Tokens: the id_token says a passkey was used.
  const resp = await fetch(`${BASE}/token`, {
    method: "POST",
    headers: {
      Authorization:
        "Basic " +
        Buffer.from(`${encodeURIComponent(CLIENT_ID)}:${encodeURIComponent(CLIENT_SECRET)}`).toString(
          "base64",
        ),
      "Content-Type": "application/x-www-form-urlencoded",
    },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code,
      redirect_uri: REDIRECT,
      code_verifier: verifier,
    }),
  });
  const tokens = await resp.json();
  assert.equal(resp.status, 200, JSON.stringify(tokens));
  const claims = JSON.parse(Buffer.from(tokens.id_token.split(".")[1], "base64url").toString());
  assert.deepEqual(claims.amr, ["hwk", "mfa"], `amr: ${JSON.stringify(claims.amr)}`);
  assert.equal(claims.acr, "phrh");
  assert.equal(claims.nonce, "browser-nonce");

  // 6. Another user signs in with a password and adds a passkey on the account page.
  // Presence off while on the sign-in page, or its autofill request would sign the
  // administrator in with their passkey.
  await presence(false);
  await context.clearCookies();
  await page.goto(`${BASE}/login`);
  await page.fill('input[autocomplete="username webauthn"]', EMAIL);
  await page.fill('input[autocomplete="current-password"]', PASSWORD);
  await Promise.all([
    page.waitForURL(`${BASE}/account`),
    page.click('button:has-text("Sign in with password")'),
  ]);
  await presence(true);
  await page.fill("#passkey-name", "Second key");
  await Promise.all([page.waitForURL(`${BASE}/account`, { waitUntil: "load" }), page.click("#passkey-add")]);
  await page.waitForSelector('text="Second key"');

  assert.deepEqual(problems, [], "no script or CSP errors in the pages");
  console.log("PASS browser: setup link sign-up with a passkey -> autofill sign-in -> button sign-in -> OIDC code -> amr", JSON.stringify(claims.amr), "; password sign-in -> add passkey");
} catch (e) {
  failed = true;
  console.error("FAIL browser:", e);
  if (page) {
    console.error("at", page.url());
    console.error((await page.textContent("body").catch(() => "")).replace(/\s+/g, " ").slice(0, 600));
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
