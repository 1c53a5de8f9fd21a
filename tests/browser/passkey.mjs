// A real browser against a running Latchkey: headless Chromium with a CTAP2 virtual
// authenticator (internal, resident keys, user verification), driven over the DevTools
// protocol by playwright-core. Run by run.sh, which starts the server and creates the user
// and client this script is given through the environment.
//
// the setup link: sign up and enrol a passkey at once -> sign out -> autofill (conditional)
// passkey sign-in -> sign out -> usernameless passkey sign-in (button) during an OIDC
// authorization -> consent -> code -> tokens whose amr says passkey; then another user's
// password sign-in, adding a passkey on /account, setting up TOTP, and signing in with the
// password and a recovery code. Every page visited is checked with axe-core (WCAG 2.1 A/AA,
// light and dark). Between the first two steps the administrator uses the admin console.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

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

// Accessibility: axe-core's WCAG 2.1 A and AA rules on the page as it is, in the light and
// the dark colour scheme (contrast differs). Violations are collected and fail the test.
const a11yProblems = [];
const checkedPages = [];
async function a11y(page, name) {
  // Evaluated through the DevTools protocol, which the page's CSP does not govern.
  await page.evaluate(AXE);
  for (const scheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme: scheme });
    const result = await page.evaluate(() =>
      window.axe.run(document, {
        runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] },
      }),
    );
    assert.ok(result.passes.length > 5, `axe ran its rules on ${name}`);
    for (const v of result.violations) {
      a11yProblems.push(
        `${name} (${scheme}): ${v.id}: ${v.help} -- ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`,
      );
    }
  }
  await page.emulateMedia({ colorScheme: process.env.COLOR_SCHEME === "dark" ? "dark" : "light" });
  checkedPages.push(name);
}

// RFC 6238 TOTP (SHA-1, 6 digits, 30 s) from the base32 secret the setup page shows.
function totp(base32, time = Date.now() / 1000) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of base32.replace(/[\s=]/g, "").toUpperCase()) {
    bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  }
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(time / 30)));
  const mac = createHmac("sha1", key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  const n = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(n).padStart(6, "0");
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
  await a11y(page, "sign-up");
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
  await a11y(page, "account");

  // 1b. The administrator, signed in just now, uses the admin console: finds the other user
  // (signed in meanwhile in another browser), ends their sessions, and rotates the test
  // client's secret with an hour's grace (the old secret, used below, keeps working).
  const other = await browser.newContext({ viewport: { width: 900, height: 900 } });
  const otherPage = await other.newPage();
  await otherPage.goto(`${BASE}/login`);
  await otherPage.fill('input[autocomplete="username webauthn"]', EMAIL);
  await otherPage.fill('input[autocomplete="current-password"]', PASSWORD);
  await Promise.all([
    otherPage.waitForURL(`${BASE}/account`),
    otherPage.click('button:has-text("Sign in with password")'),
  ]);
  await page.goto(`${BASE}/admin`);
  await page.fill("#search", EMAIL);
  await Promise.all([page.waitForURL(/\/admin\/users\?search=/), page.press("#search", "Enter")]);
  await shot(page, "admin-users");
  await a11y(page, "admin-users");
  await Promise.all([page.waitForURL(/\/admin\/users\/[^?]+$/), page.click(`a:has-text("${EMAIL}")`)]);
  assert.equal((await page.textContent("#session-count")).trim(), "1", "the other user's session is listed");
  await a11y(page, "admin-user");
  await Promise.all([page.waitForURL(/done=sessions/), page.click('button:has-text("End all sessions")')]);
  await page.waitForSelector("text=Their sessions have ended.");
  assert.equal((await page.textContent("#session-count")).trim(), "0");
  await otherPage.goto(`${BASE}/account`);
  assert.equal(new URL(otherPage.url()).pathname, "/login", "the other browser is signed out");
  await other.close();
  // The first page is the one in front again (focus and autofocus follow it).
  await page.bringToFront();
  await page.click('nav a:has-text("Clients")');
  await page.waitForURL(`${BASE}/admin/clients`);
  await a11y(page, "admin-clients");
  await Promise.all([page.waitForURL(/\/admin\/clients\/.+/), page.click('a:has-text("Browser Test RP")')]);
  await a11y(page, "admin-client");
  await page.selectOption("#grace", "3600");
  await page.click('button:has-text("Rotate the secret")');
  await page.waitForSelector("#new-secret");
  await a11y(page, "admin-secret");
  const newSecret = (await page.textContent("#new-secret")).trim();
  const revokeWith = async (secret) =>
    (await fetch(`${BASE}/revoke`, {
      method: "POST",
      headers: {
        authorization: `Basic ${Buffer.from(`${encodeURIComponent(CLIENT_ID)}:${encodeURIComponent(secret)}`).toString("base64")}`,
        "content-type": "application/x-www-form-urlencoded",
      },
      body: "token=not-a-token",
    })).status;
  assert.equal(await revokeWith(newSecret), 200, "the new secret authenticates the client");
  assert.equal(await revokeWith(CLIENT_SECRET), 200, "the old one still does, within the grace");
  assert.equal(await revokeWith("wrong"), 401);
  await page.goto(`${BASE}/admin/sessions`);
  await page.waitForSelector("text=Live sessions");
  await a11y(page, "admin-sessions");
  await page.goto(`${BASE}/admin/keys`);
  await a11y(page, "admin-keys");
  await page.goto(`${BASE}/admin/audit?type=client.secret_rotated`);
  await page.waitForSelector("text=client.secret_rotated");
  await a11y(page, "admin-audit");
  await page.goto(`${BASE}/account`);

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
  await shot(page, "sign-in");
  await a11y(page, "sign-in");
  await presence(true);
  await page.click("#passkey-signin");
  await page.waitForSelector('button[value="allow"]');
  await shot(page, "consent");
  await a11y(page, "consent");
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
  // With the keyboard only: the email field has the focus, Tab goes on to the password,
  // Enter signs in.
  await page.goto(`${BASE}/login`);
  const focused = () => page.evaluate(() => document.activeElement && document.activeElement.id);
  // Autofocus is applied at the next rendering update after load: wait for it (a page that
  // never focuses the field fails here after 5 s).
  await page
    .waitForFunction(() => document.activeElement && document.activeElement.id === "email", null, { timeout: 5000 })
    .catch(() => {});
  assert.equal(await focused(), "email", "the sign-in page starts in the email field");
  await page.keyboard.type(EMAIL);
  await page.keyboard.press("Tab");
  assert.equal(await focused(), "password", "Tab moves to the password");
  await page.keyboard.type(PASSWORD);
  await Promise.all([page.waitForURL(`${BASE}/account`), page.keyboard.press("Enter")]);
  await presence(true);
  await page.fill("#passkey-name", "Second key");
  await Promise.all([page.waitForURL(`${BASE}/account`, { waitUntil: "load" }), page.click("#passkey-add")]);
  await page.waitForSelector('text="Second key"');

  // 7. That user sets up an authenticator app (a code computed from the secret the page
  // shows), keeps the recovery codes, signs out, and signs in with the password and a
  // recovery code (the enrolment's code is spent, and no code is accepted twice).
  await page.click('button:has-text("Set up an authenticator app")');
  await page.waitForSelector("svg.qr");
  await shot(page, "totp-setup");
  await a11y(page, "totp-setup");
  await page.click("summary:has-text(\"Can't scan it?\")");
  const secret = (await page.textContent("#totp-secret")).replace(/\s/g, "");
  assert.match(await page.getAttribute("#totp-uri", "href"), /^otpauth:\/\/totp\//);
  await page.fill("#code", totp(secret));
  await page.click('button:has-text("Turn on")');
  await page.waitForSelector("#recovery-codes");
  await a11y(page, "recovery-codes");
  const codes = (await page.$$eval("#recovery-codes code", (els) => els.map((e) => e.textContent)));
  assert.equal(codes.length, 10, "ten recovery codes");
  await Promise.all([page.waitForURL(`${BASE}/account`), page.click('a:has-text("I have saved them")')]);
  await page.waitForSelector("text=10 of 10 recovery codes left");
  await presence(false);
  await Promise.all([page.waitForURL(`${BASE}/login`), page.click('form[action="/account/signout"] button')]);
  await page.fill('input[autocomplete="username webauthn"]', EMAIL);
  await page.fill('input[autocomplete="current-password"]', PASSWORD);
  await page.click('button:has-text("Sign in with password")');
  await page.waitForSelector('input[autocomplete="one-time-code"]');
  await shot(page, "second-factor");
  await a11y(page, "second-factor");
  await page.click("summary:has-text(\"Use a recovery code instead\")");
  await page.fill("#recovery-code", codes[0]);
  await Promise.all([
    page.waitForURL(`${BASE}/account`),
    page.click('button:has-text("Use recovery code")'),
  ]);
  await page.waitForSelector("text=9 of 10 recovery codes left");

  // 8. The password-reset request page, signed out.
  await context.clearCookies();
  await page.goto(`${BASE}/reset`);
  await a11y(page, "reset");
  // The checker itself catches a problem: the same page with its field's label detached.
  await page.evaluate(() => document.querySelector('label[for="email"]').removeAttribute("for"));
  const before = a11yProblems.length;
  await a11y(page, "reset without its label (self-check)");
  assert.ok(
    a11yProblems.slice(before).some((p) => p.includes("label")),
    "axe reports a field without a label",
  );
  a11yProblems.splice(before);
  checkedPages.pop();

  assert.deepEqual(problems, [], "no script or CSP errors in the pages");
  assert.deepEqual(a11yProblems, [], "no WCAG 2.1 A/AA violations (axe-core)");
  console.log("PASS browser: setup link sign-up with a passkey -> admin console (find a user, end their sessions, rotate a client secret with a grace) -> autofill sign-in -> button sign-in -> OIDC code -> amr", JSON.stringify(claims.amr), "; password sign-in -> add passkey -> TOTP set-up -> password + recovery code sign-in");
  console.log(`PASS accessibility: axe-core ${JSON.parse(readFileSync(require.resolve("axe-core/package.json"), "utf8")).version}, WCAG 2.1 A/AA, light and dark: ${checkedPages.join(", ")}`);
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
