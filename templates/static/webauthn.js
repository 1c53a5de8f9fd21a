// Passkey ceremonies for the sign-in and account pages. The server keeps the ceremony state;
// this file only carries options from the server to the browser's WebAuthn API and the answer
// back, in a normal form post. Pages work without it (password sign-in); it only adds passkeys.
"use strict";

(function () {
  if (!window.PublicKeyCredential || !navigator.credentials) {
    return;
  }

  function fromB64url(s) {
    const b64 = s.replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(b64 + "===".slice((b64.length + 3) % 4));
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }

  function toB64url(buf) {
    const bytes = new Uint8Array(buf);
    let bin = "";
    for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withIds(list) {
    return (list || []).map(function (c) {
      return Object.assign({}, c, { id: fromB64url(c.id) });
    });
  }

  // Only the extension results the server reads; others stay in the browser.
  function extensions(cred) {
    const all = cred.getClientExtensionResults ? cred.getClientExtensionResults() : {};
    const out = {};
    if (all.credProps && typeof all.credProps.rk === "boolean") {
      out.credProps = { rk: all.credProps.rk };
    }
    return out;
  }

  async function options(url, form, extra) {
    const body = new URLSearchParams();
    body.set("csrf_token", form.elements.csrf_token.value);
    for (const [k, v] of Object.entries(extra)) body.set(k, v);
    const resp = await fetch(url, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (!resp.ok) throw new Error("options " + resp.status);
    return resp.json();
  }

  function show(id, message) {
    const el = document.getElementById(id);
    if (!el) return;
    el.textContent = message;
    el.hidden = false;
    el.focus();
  }

  function submitAnswer(form, ceremony, credential) {
    form.elements.ceremony.value = ceremony;
    form.elements.credential.value = JSON.stringify(credential);
    form.submit();
  }

  // ---- Sign-in ------------------------------------------------------------------------
  const signinForm = document.getElementById("passkey-form");
  if (signinForm) {
    const button = document.getElementById("passkey-signin");
    const email = document.getElementById("email");
    const message = signinForm.dataset.failed || "The passkey sign-in did not complete.";
    let pending = null;

    async function assertion(mediation) {
      const extra = { mediation: mediation };
      if (mediation !== "conditional" && email && email.value.trim() !== "") {
        extra.email = email.value.trim();
      }
      const got = await options("/login/passkey/options", signinForm, extra);
      const pk = got.options.publicKey;
      const publicKey = Object.assign({}, pk, {
        challenge: fromB64url(pk.challenge),
        allowCredentials: withIds(pk.allowCredentials),
      });
      if (pending) pending.abort();
      pending = new AbortController();
      const request = { publicKey: publicKey, signal: pending.signal };
      if (mediation === "conditional") request.mediation = "conditional";
      const cred = await navigator.credentials.get(request);
      pending = null;
      const r = cred.response;
      submitAnswer(signinForm, got.ceremony, {
        id: cred.id,
        rawId: toB64url(cred.rawId),
        type: cred.type,
        response: {
          authenticatorData: toB64url(r.authenticatorData),
          clientDataJSON: toB64url(r.clientDataJSON),
          signature: toB64url(r.signature),
          userHandle: r.userHandle ? toB64url(r.userHandle) : null,
        },
        extensions: {},
      });
    }

    if (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        assertion("required").catch(function (e) {
          if (e && e.name === "AbortError") return;
          show("passkey-error", message);
        });
      });
    }

    // Autofill: offer this site's passkeys in the username field's suggestions.
    if (PublicKeyCredential.isConditionalMediationAvailable) {
      PublicKeyCredential.isConditionalMediationAvailable().then(function (ok) {
        if (ok) {
          assertion("conditional").catch(function () {
            // Dismissed or replaced by the button; the button still works.
          });
        }
      });
    }
  }

  // ---- Creating a passkey: on the account page, and at sign-up --------------------------
  function creator(form, button, url, errorId, extra) {
    const message = form.dataset.failed || "The passkey was not created.";
    button.hidden = false;
    button.addEventListener("click", async function () {
      if (!form.reportValidity()) return;
      try {
        const got = await options(url, form, extra());
        const pk = got.options.publicKey;
        const publicKey = Object.assign({}, pk, {
          challenge: fromB64url(pk.challenge),
          user: Object.assign({}, pk.user, { id: fromB64url(pk.user.id) }),
          excludeCredentials: withIds(pk.excludeCredentials),
        });
        const cred = await navigator.credentials.create({ publicKey: publicKey });
        const r = cred.response;
        submitAnswer(form, got.ceremony, {
          id: cred.id,
          rawId: toB64url(cred.rawId),
          type: cred.type,
          response: {
            attestationObject: toB64url(r.attestationObject),
            clientDataJSON: toB64url(r.clientDataJSON),
            transports: r.getTransports ? r.getTransports() : [],
          },
          extensions: extensions(cred),
        });
      } catch (e) {
        show(errorId, message);
      }
    });
  }

  const addForm = document.getElementById("passkey-add-form");
  if (addForm) {
    creator(addForm, document.getElementById("passkey-add"), "/account/passkeys/options",
      "passkey-add-error", function () { return {}; });
  }

  const signupForm = document.getElementById("signup-form");
  if (signupForm) {
    creator(signupForm, document.getElementById("signup-passkey"), "/signup/options",
      "signup-passkey-error", function () {
        return {
          invite: signupForm.elements.invite.value,
          email: signupForm.elements.email.value,
          name: signupForm.elements.name.value,
        };
      });
  }
})();
