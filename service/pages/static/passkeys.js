// Passkeys in the pages (docs/design.md §12). Every passkey control is `hidden` in the HTML and
// shown here only where the browser has WebAuthn; the pages' own words say what to do without
// it. The options come from the JSON API; the answer goes back through a normal form POST (with
// its CSRF field), so the server answers with a redirect or a page as for an emailed code.
"use strict";

(function () {
  var supported = !!(window.PublicKeyCredential && navigator.credentials &&
    navigator.credentials.create && navigator.credentials.get);
  document.querySelectorAll("[data-webauthn]").forEach(function (el) { el.hidden = !supported; });
  document.querySelectorAll("[data-no-webauthn]").forEach(function (el) { el.hidden = supported; });
  if (!supported) {
    return;
  }

  function toBytes(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    var raw = atob(b64 + "===".slice((b64.length + 3) % 4));
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) {
      bytes[i] = raw.charCodeAt(i);
    }
    return bytes.buffer;
  }

  function toText(buffer) {
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) {
      raw += String.fromCharCode(bytes[i]);
    }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map(function (c) {
      return { type: c.type, id: toBytes(c.id), transports: c.transports };
    });
  }

  function creationOptions(json) {
    var options = Object.assign({}, json);
    options.challenge = toBytes(json.challenge);
    options.user = Object.assign({}, json.user, { id: toBytes(json.user.id) });
    options.excludeCredentials = descriptors(json.excludeCredentials);
    return options;
  }

  function requestOptions(json) {
    var options = Object.assign({}, json);
    options.challenge = toBytes(json.challenge);
    options.allowCredentials = descriptors(json.allowCredentials);
    return options;
  }

  // The credential in WebAuthn's JSON form, as the server's `webauthn` package reads it.
  function credentialJson(credential) {
    var r = credential.response;
    var response = { clientDataJSON: toText(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toText(r.attestationObject);
      response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      response.authenticatorData = toText(r.authenticatorData);
      response.signature = toText(r.signature);
      if (r.userHandle) {
        response.userHandle = toText(r.userHandle);
      }
    }
    return JSON.stringify({
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      clientExtensionResults: {},
      response: response,
    });
  }

  function fetchOptions(url) {
    return fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      credentials: "same-origin",
      body: "{}",
    }).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) {
          throw new Error((body.error && body.error.message) || "Passkeys are not available.");
        }
        return body;
      });
    });
  }

  function showError(message) {
    var region = document.getElementById("form-error");
    if (!region) {
      return;
    }
    var p = document.createElement("p");
    p.className = "error";
    p.tabIndex = -1;
    p.textContent = message;
    region.replaceChildren(p);
    p.focus();
  }

  function explain(error) {
    if (error && error.name === "NotAllowedError") {
      return "The passkey request was cancelled or timed out. Try again, or use another way.";
    }
    if (error && error.name === "InvalidStateError") {
      return "This device already has a passkey for your account.";
    }
    return (error && error.message) || "Your passkey could not be used.";
  }

  function send(form, credential) {
    form.querySelector("input[name=" + (form.dataset.field || "credential") + "]").value =
      credentialJson(credential);
    form.dataset.sent = "1";
    form.submit();
  }

  // --- signing in: the button, and conditional UI on the email field ------------------------
  var loginForm = document.querySelector("form[data-passkey-login]");
  var waiting = null; // the conditional request, aborted when the button asks instead

  function signIn(mediation) {
    return fetchOptions("/api/passkeys/login/options").then(function (body) {
      var request = { publicKey: requestOptions(body.publicKey) };
      if (mediation) {
        waiting = new AbortController();
        request.mediation = mediation;
        request.signal = waiting.signal;
      }
      return navigator.credentials.get(request);
    }).then(function (credential) {
      if (credential) {
        send(loginForm, credential);
      }
    });
  }

  if (loginForm) {
    loginForm.addEventListener("submit", function (event) {
      event.preventDefault();
      if (waiting) {
        waiting.abort();
        waiting = null;
      }
      signIn(null).catch(function (error) { showError(explain(error)); });
    });
    var conditional = PublicKeyCredential.isConditionalMediationAvailable;
    if (conditional) {
      conditional.call(PublicKeyCredential).then(function (available) {
        if (available) {
          // Errors here are silent: the person has not asked for anything yet.
          signIn("conditional").catch(function () {});
        }
      });
    }
  }

  // --- the second step, and a step-up (whose form names its own options) --------------------
  var stepForm = document.querySelector("form[data-passkey-step]");
  if (stepForm) {
    stepForm.addEventListener("submit", function (event) {
      event.preventDefault();
      fetchOptions(stepForm.dataset.options || "/api/passkeys/login/options").then(function (body) {
        return navigator.credentials.get({ publicKey: requestOptions(body.publicKey) });
      }).then(function (credential) {
        send(stepForm, credential);
      }).catch(function (error) { showError(explain(error)); });
    });
  }

  // --- adding a passkey ----------------------------------------------------------------------
  var addForm = document.querySelector("form[data-passkey-add]");
  if (addForm) {
    addForm.addEventListener("submit", function (event) {
      event.preventDefault();
      fetchOptions("/api/passkeys/register/options").then(function (body) {
        return navigator.credentials.create({ publicKey: creationOptions(body.publicKey) });
      }).then(function (credential) {
        send(addForm, credential);
      }).catch(function (error) { showError(explain(error)); });
    });
  }
})();
