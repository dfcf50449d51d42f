// Portcullis webauthn.js, served at /.well-known/ory/webauthn.js: the browser half of the
// passkey ceremonies, with Ory Kratos's contract. The flow carries the challenge in hidden
// inputs (`passkey_challenge`, `passkey_create_data`); these functions run
// navigator.credentials.get/create, write the answer (JSON, buffers base64url-encoded) into
// `passkey_login`, `passkey_register` or `passkey_settings_register`, and submit the form.
//
// Unlike Kratos's script, this one never bails out silently: on an insecure origin or in a
// browser without WebAuthn the functions still exist, and calling them shows why passkeys
// cannot work here, in the page and in the console.
(function () {
  "use strict";

  var ERROR_ID = "portcullis-passkey-error";
  var origin = window.location.origin;
  var secure = window.isSecureContext === true;
  var supported =
    secure && typeof window.PublicKeyCredential !== "undefined" && !!navigator.credentials;
  var INSECURE =
    "Passkeys need a secure origin (https:// or localhost). This page is served from " + origin + ".";
  var UNSUPPORTED = "This browser does not support passkeys (WebAuthn). Use a current browser.";
  var TRIGGERS = [
    "oryPasskeyLogin",
    "oryPasskeyLoginAutocompleteInit",
    "oryPasskeyRegistration",
    "oryPasskeySettingsRegistration",
  ];
  var conditional = null; // AbortController of a pending autofill (conditional) request
  var busy = false;

  if (!secure) {
    console.error("[portcullis] " + INSECURE);
  } else if (!supported) {
    console.error("[portcullis] " + UNSUPPORTED);
  }

  function bufferFromB64url(value) {
    var s = String(value).replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var bin = window.atob(s);
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return bytes.buffer;
  }

  function b64urlFromBuffer(buffer) {
    if (!buffer) return null;
    var bytes = new Uint8Array(buffer);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return window.btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function field(name) {
    return document.getElementsByName(name)[0] || null;
  }

  function formOf(el) {
    return (el && el.closest && el.closest("form")) || document.querySelector("form");
  }

  // A visible message right before the form (role=alert so screen readers announce it).
  function showError(text, near) {
    console.error("[portcullis] " + text);
    var box = document.getElementById(ERROR_ID);
    if (!box) {
      box = document.createElement("div");
      box.id = ERROR_ID;
      box.className = "portcullis-passkey-error";
      box.setAttribute("role", "alert");
      var form = formOf(near);
      if (form && form.parentNode) {
        form.parentNode.insertBefore(box, form);
      } else if (document.body) {
        document.body.insertBefore(box, document.body.firstChild);
      }
    }
    box.textContent = text;
  }

  function clearError() {
    var box = document.getElementById(ERROR_ID);
    if (box && box.parentNode) box.parentNode.removeChild(box);
  }

  function usable(near) {
    if (!secure) {
      showError(INSECURE, near);
      return false;
    }
    if (!supported) {
      showError(UNSUPPORTED, near);
      return false;
    }
    return true;
  }

  function explain(err) {
    var name = err && err.name;
    if (name === "NotAllowedError") {
      return "The passkey request was cancelled or timed out. Try again.";
    }
    if (name === "SecurityError") {
      return (
        "The browser refused the passkey request on " + origin + ": the relying party id must be " +
        "this page's host or a parent domain of it, and IP addresses such as 127.0.0.1 are not " +
        "accepted. Open this page by its domain name (for example http://localhost:4444)."
      );
    }
    if (name === "InvalidStateError") {
      return "This device already holds a passkey for this account.";
    }
    if (name === "AbortError") return null;
    return "The passkey request failed: " + ((err && err.message) || String(err));
  }

  function failed(err, near) {
    var text = explain(err);
    if (text) showError(text, near);
  }

  // The options JSON in a hidden input, or null after reporting what is wrong.
  function options(name) {
    var el = field(name);
    if (!el || !el.value) {
      showError("This page has no passkey challenge (" + name + "). Reload it and try again.", el);
      return null;
    }
    var data;
    try {
      data = JSON.parse(el.value);
    } catch (e) {
      showError("The passkey challenge (" + name + ") is not valid JSON. Reload the page.", el);
      return null;
    }
    // Kratos wraps creation options as {credentialOptions, displayNameFieldName}.
    if (data && data.credentialOptions) {
      var wrapped = data;
      data = data.credentialOptions;
      var nameField = wrapped.displayNameFieldName && formOf(el).querySelector(
        "[name='" + String(wrapped.displayNameFieldName).replace(/'/g, "") + "']");
      if (nameField && nameField.value && data.publicKey && data.publicKey.user) {
        data.publicKey.user.name = nameField.value;
        data.publicKey.user.displayName = nameField.value;
      }
    }
    if (!data || !data.publicKey) {
      showError("The passkey challenge (" + name + ") has no publicKey options. Reload the page.", el);
      return null;
    }
    return data.publicKey;
  }

  function descriptors(list) {
    return (list || []).map(function (c) {
      var out = { type: c.type || "public-key", id: bufferFromB64url(c.id) };
      if (c.transports) out.transports = c.transports;
      return out;
    });
  }

  // Writes the answer, makes sure the form says method=passkey (form.submit() sends no
  // submit button) and submits without HTML validation: the usernameless login form's
  // identifier field is required for the other methods but not for this one.
  function submit(resultName, answer) {
    var el = field(resultName);
    if (!el) {
      showError("This page has no " + resultName + " field to send the passkey answer in.", null);
      return;
    }
    el.value = JSON.stringify(answer);
    var form = formOf(el);
    if (!form) {
      showError("The " + resultName + " field is not inside a form.", el);
      return;
    }
    setMethod(form);
    clearError();
    HTMLFormElement.prototype.submit.call(form);
  }

  function setMethod(form) {
    var method = form.querySelector("input[type='hidden'][name='method']");
    if (!method) {
      method = document.createElement("input");
      method.type = "hidden";
      method.name = "method";
      form.appendChild(method);
    }
    method.value = "passkey";
  }

  function assertion(cred) {
    var ext = cred.getClientExtensionResults ? cred.getClientExtensionResults() : {};
    var extensions = {};
    if (ext && typeof ext.appid === "boolean") extensions.appid = ext.appid;
    return {
      id: cred.id,
      rawId: b64urlFromBuffer(cred.rawId),
      type: cred.type,
      response: {
        authenticatorData: b64urlFromBuffer(cred.response.authenticatorData),
        clientDataJSON: b64urlFromBuffer(cred.response.clientDataJSON),
        signature: b64urlFromBuffer(cred.response.signature),
        userHandle: b64urlFromBuffer(cred.response.userHandle),
      },
      extensions: extensions,
    };
  }

  function attestation(cred) {
    var ext = cred.getClientExtensionResults ? cred.getClientExtensionResults() : {};
    var extensions = {};
    if (ext && ext.credProps && typeof ext.credProps.rk === "boolean") {
      extensions.credProps = { rk: ext.credProps.rk };
    }
    var response = {
      attestationObject: b64urlFromBuffer(cred.response.attestationObject),
      clientDataJSON: b64urlFromBuffer(cred.response.clientDataJSON),
    };
    if (cred.response.getTransports) response.transports = cred.response.getTransports();
    return {
      id: cred.id,
      rawId: b64urlFromBuffer(cred.rawId),
      type: cred.type,
      response: response,
      extensions: extensions,
    };
  }

  function requestOptions() {
    var publicKey = options("passkey_challenge");
    if (!publicKey) return null;
    publicKey.challenge = bufferFromB64url(publicKey.challenge);
    publicKey.allowCredentials = descriptors(publicKey.allowCredentials);
    return publicKey;
  }

  function oryPasskeyLogin() {
    var near = field("passkey_login") || field("passkey_challenge");
    if (!usable(near) || busy) return Promise.resolve();
    var publicKey = requestOptions();
    if (!publicKey) return Promise.resolve();
    if (conditional) conditional.abort();
    busy = true;
    return navigator.credentials
      .get({ publicKey: publicKey })
      .then(function (cred) {
        busy = false;
        if (cred) submit("passkey_login", assertion(cred));
      })
      .catch(function (err) {
        busy = false;
        failed(err, near);
      });
  }

  // Autofill sign-in: the browser offers passkeys in the identifier field's suggestions
  // (that input needs autocomplete="username webauthn").
  function oryPasskeyLoginAutocompleteInit() {
    var near = field("passkey_login") || field("passkey_challenge");
    if (!usable(near)) return Promise.resolve();
    var check = window.PublicKeyCredential.isConditionalMediationAvailable;
    if (!check) return Promise.resolve();
    return check.call(window.PublicKeyCredential).then(function (available) {
      if (!available) return;
      var publicKey = requestOptions();
      if (!publicKey) return;
      if (conditional) conditional.abort();
      conditional = new AbortController();
      return navigator.credentials
        .get({ publicKey: publicKey, mediation: "conditional", signal: conditional.signal })
        .then(function (cred) {
          if (cred) submit("passkey_login", assertion(cred));
        })
        .catch(function (err) {
          failed(err, near);
        });
    });
  }

  function create(resultName) {
    var near = field(resultName) || field("passkey_create_data");
    if (!usable(near) || busy) return Promise.resolve();
    var publicKey = options("passkey_create_data");
    if (!publicKey) return Promise.resolve();
    publicKey.challenge = bufferFromB64url(publicKey.challenge);
    publicKey.user.id = bufferFromB64url(publicKey.user.id);
    if (publicKey.excludeCredentials) {
      publicKey.excludeCredentials = descriptors(publicKey.excludeCredentials);
    }
    if (conditional) conditional.abort();
    busy = true;
    return navigator.credentials
      .create({ publicKey: publicKey })
      .then(function (cred) {
        busy = false;
        if (cred) submit(resultName, attestation(cred));
      })
      .catch(function (err) {
        busy = false;
        failed(err, near);
      });
  }

  function oryPasskeyRegistration() {
    return create("passkey_register");
  }

  function oryPasskeySettingsRegistration() {
    return create(field("passkey_settings_register") ? "passkey_settings_register" : "passkey_register");
  }

  var api = {
    oryPasskeyLogin: oryPasskeyLogin,
    oryPasskeyLoginAutocompleteInit: oryPasskeyLoginAutocompleteInit,
    oryPasskeyRegistration: oryPasskeyRegistration,
    oryPasskeySettingsRegistration: oryPasskeySettingsRegistration,
  };
  Object.keys(api).forEach(function (name) {
    window[name] = api[name];
    // Kratos keeps these aliases for Ory Elements v0.
    window["__" + name] = api[name];
  });

  // The built-in pages' Content-Security-Policy forbids inline handlers, so their buttons say
  // which function to run in data-portcullis-trigger. Delegation also covers buttons added
  // after this (async) script ran.
  document.addEventListener("click", function (event) {
    var el = event.target && event.target.closest && event.target.closest("[data-portcullis-trigger]");
    if (!el) return;
    event.preventDefault();
    var name = el.getAttribute("data-portcullis-trigger");
    if (TRIGGERS.indexOf(name) < 0) {
      showError("Unknown passkey action " + JSON.stringify(name) + ".", el);
      return;
    }
    window[name]();
  });

  // Kratos's `onloadTrigger` (e.g. oryPasskeyLoginAutocompleteInit), rendered by the built-in
  // UI as data-portcullis-onload: run once the document is there.
  function runOnload() {
    var els = document.querySelectorAll("[data-portcullis-onload]");
    var ran = {};
    for (var i = 0; i < els.length; i++) {
      var name = els[i].getAttribute("data-portcullis-onload");
      if (TRIGGERS.indexOf(name) >= 0 && !ran[name]) {
        ran[name] = true;
        window[name]();
      }
    }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", runOnload);
  } else {
    runOnload();
  }

  // Remove buttons (`passkey_remove=<id>`) are plain submit buttons: add method=passkey.
  document.addEventListener("submit", function (event) {
    var by = event.submitter;
    if (by && by.name === "passkey_remove" && event.target instanceof HTMLFormElement) {
      setMethod(event.target);
    }
  });
})();
