// Portcullis: the browser's part of a WebAuthn ceremony, the only script the gateway's pages
// load (served from /.portcullis/webauthn.js under `script-src 'self'`). It reads the options
// the page carries (#webauthn[data-options]), asks the browser for a passkey, and posts the
// answer back through the page's own form as the field `credential` (JSON, binary members in
// base64url), the same field the JSON API takes.
(function () {
  "use strict";
  var holder = document.getElementById("webauthn");
  if (!holder) return;
  var status = document.getElementById("webauthn-status");
  var button = document.getElementById("webauthn-start");
  var field = document.querySelector("input[name=credential]");
  var form = field && field.form;
  var spec;
  try { spec = JSON.parse(holder.getAttribute("data-options")); } catch (e) { return; }

  function say(text) { if (status) status.textContent = text; }

  if (!window.PublicKeyCredential || !navigator.credentials || !form) {
    say("This browser cannot use passkeys here.");
    return;
  }

  function toBytes(b64url) {
    var b64 = b64url.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) b64 += "=";
    var bin = atob(b64), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }

  function toB64url(buf) {
    if (!buf) return null;
    var bytes = new Uint8Array(buf), bin = "";
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function ids(list) {
    return (list || []).map(function (c) {
      var d = { type: c.type, id: toBytes(c.id) };
      if (c.transports) d.transports = c.transports;
      return d;
    });
  }

  function publicKey() {
    var pk = JSON.parse(JSON.stringify(spec.publicKey));
    pk.challenge = toBytes(pk.challenge);
    if (spec.mode === "create") {
      pk.user.id = toBytes(pk.user.id);
      pk.excludeCredentials = ids(pk.excludeCredentials);
    } else {
      pk.allowCredentials = ids(pk.allowCredentials);
    }
    return pk;
  }

  function answer(cred) {
    var r = cred.response, out = {
      id: cred.id,
      rawId: toB64url(cred.rawId),
      type: cred.type,
      extensions: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      response: { clientDataJSON: toB64url(r.clientDataJSON) }
    };
    if (spec.mode === "create") {
      out.response.attestationObject = toB64url(r.attestationObject);
      if (r.getTransports) out.response.transports = r.getTransports();
    } else {
      out.response.authenticatorData = toB64url(r.authenticatorData);
      out.response.signature = toB64url(r.signature);
      out.response.userHandle = toB64url(r.userHandle);
    }
    return JSON.stringify(out);
  }

  function send(cred) {
    field.value = answer(cred);
    // Nothing else of the form is needed: a passkey names the account by itself.
    var uid = form.querySelector("input[name=uid]");
    if (uid) uid.value = "";
    say("Checking your passkey…");
    form.submit();
  }

  function failed(e) {
    if (e && e.name === "AbortError") return;
    var why = e && e.name === "NotAllowedError"
      ? "No passkey was used (cancelled or timed out)."
      : e && e.name === "InvalidStateError"
        ? "This passkey is already registered."
        : "The passkey did not work.";
    say(why + " Try again.");
  }

  var pending = null;

  function run() {
    if (pending) pending.abort();
    pending = null;
    say(spec.mode === "create" ? "Follow your browser's prompt to create a passkey…" : "Follow your browser's prompt to use your passkey…");
    var call = spec.mode === "create"
      ? navigator.credentials.create({ publicKey: publicKey() })
      : navigator.credentials.get({ publicKey: publicKey() });
    call.then(function (cred) { if (cred) send(cred); }, failed);
  }

  if (button) {
    button.hidden = false;
    button.addEventListener("click", run);
  }

  // Passkey autofill: the username field offers the browser's passkeys while the person
  // types, where the browser supports conditional mediation.
  // After a refused passkey the person chooses again with the button: the same passkey is
  // not offered in the autofill again.
  if (spec.mode === "get" && spec.mediation === "conditional" &&
      !document.getElementById("form-errors") &&
      PublicKeyCredential.isConditionalMediationAvailable) {
    PublicKeyCredential.isConditionalMediationAvailable().then(function (ok) {
      if (!ok) return;
      pending = new AbortController();
      navigator.credentials.get({ publicKey: publicKey(), mediation: "conditional", signal: pending.signal })
        .then(function (cred) { if (cred) send(cred); }, failed);
    }, function () {});
  }
})();
