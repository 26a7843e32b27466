// caddy two-factor: the pages' only script. Every page works without it
// (codes and backup codes are typed into plain forms); it adds two buttons
// to the backup codes page (copy the codes to the clipboard, and print
// them), and drives security keys and passkeys (WebAuthn): "Use your
// security key" on the code page, adding a key on the Security page, and
// "Confirm with a security key" on the forms that need a second factor.
// What it adds is hidden until this runs. The JSON it speaks is in
// docs/webauthn.md.
(function () {
  "use strict";

  function announce(text) {
    var status = document.getElementById("copy-status");
    if (status) {
      status.textContent = text;
    }
  }

  var copy = document.querySelector("button[data-copy]");
  if (copy && navigator.clipboard && window.isSecureContext) {
    copy.hidden = false;
    copy.addEventListener("click", function () {
      var list = document.getElementById(copy.getAttribute("data-copy"));
      var codes = [];
      list.querySelectorAll("code").forEach(function (c) {
        codes.push(c.textContent.trim());
      });
      navigator.clipboard.writeText(codes.join("\n") + "\n").then(
        function () { announce(copy.getAttribute("data-done")); },
        function () { announce(copy.getAttribute("data-failed")); }
      );
    });
  }

  var print = document.querySelector("button[data-print]");
  if (print && typeof window.print === "function") {
    print.hidden = false;
    print.addEventListener("click", function () {
      window.print();
    });
  }
})();

(function () {
  "use strict";

  var supported = !!(window.PublicKeyCredential && navigator.credentials && window.isSecureContext);

  function fromB64u(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) { s += "="; }
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out.buffer;
  }

  function toB64u(buf) {
    var bytes = new Uint8Array(buf), s = "";
    for (var i = 0; i < bytes.length; i++) { s += String.fromCharCode(bytes[i]); }
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  // The options as the server sends them (WebAuthn Level 3 JSON) to what
  // navigator.credentials takes.
  function creationOptions(o) {
    o.challenge = fromB64u(o.challenge);
    o.user.id = fromB64u(o.user.id);
    (o.excludeCredentials || []).forEach(function (c) { c.id = fromB64u(c.id); });
    return o;
  }

  function requestOptions(o) {
    o.challenge = fromB64u(o.challenge);
    (o.allowCredentials || []).forEach(function (c) { c.id = fromB64u(c.id); });
    return o;
  }

  // A credential as RegistrationResponseJSON or AuthenticationResponseJSON.
  function credentialJSON(c) {
    var r = c.response, out = {
      id: c.id, rawId: toB64u(c.rawId), type: c.type,
      authenticatorAttachment: c.authenticatorAttachment || undefined,
      clientExtensionResults: c.getClientExtensionResults ? c.getClientExtensionResults() : {},
      response: { clientDataJSON: toB64u(r.clientDataJSON) }
    };
    if (r.attestationObject) {
      out.response.attestationObject = toB64u(r.attestationObject);
      if (r.getTransports) { out.response.transports = r.getTransports(); }
    } else {
      out.response.authenticatorData = toB64u(r.authenticatorData);
      out.response.signature = toB64u(r.signature);
      if (r.userHandle) { out.response.userHandle = toB64u(r.userHandle); }
    }
    return out;
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body || {})
    }).then(function (res) {
      return res.json().then(function (data) { data.ok = res.ok; return data; },
        function () { return { ok: false }; });
    });
  }

  // ui: the element holding the data-msg-* words, a status line and an
  // error line.
  function feedback(box) {
    var status = box.querySelector("[data-key-status]");
    var error = box.querySelector("[data-key-error]") || status;
    return {
      working: function () {
        if (error !== status) { error.hidden = true; error.textContent = ""; }
        status.textContent = box.getAttribute("data-msg-working");
      },
      fail: function (text) {
        status.textContent = "";
        error.hidden = false;
        error.textContent = text || box.getAttribute("data-msg-failed");
        if (error.focus && error !== status) { error.setAttribute("tabindex", "-1"); error.focus(); }
      },
      clear: function () { status.textContent = ""; }
    };
  }

  // assert asks the browser for an assertion of one of the user's keys,
  // for the session's challenge; it resolves to AuthenticationResponseJSON.
  function assert(prefix, fb, box) {
    return post(prefix + "/webauthn/login/options").then(function (o) {
      if (!o.ok) { throw new Error(o.message || ""); }
      delete o.ok;
      return navigator.credentials.get({ publicKey: requestOptions(o) }).then(credentialJSON, function () {
        throw new Error(box.getAttribute("data-msg-cancelled"));
      });
    });
  }

  // The code page: "Use your security key".
  var login = document.querySelector("[data-key-login]");
  if (login && supported) {
    login.hidden = false;
    var prefix = login.getAttribute("data-key-login"), fb = feedback(login);
    login.querySelector("button").addEventListener("click", function () {
      fb.working();
      assert(prefix, fb, login).then(function (cred) {
        var remember = document.querySelector("input[name=remember]:checked");
        if (remember) { cred.remember = true; }
        if (login.hasAttribute("data-step-up")) {
          cred.step_up = true;
          cred.next = login.getAttribute("data-step-up");
        }
        return post(prefix + "/webauthn/login", cred);
      }).then(function (res) {
        if (res.redirect) { window.location.assign(res.redirect); return; }
        fb.fail(res.message);
      }, function (e) { fb.fail(e.message); });
    });
  }

  // "Confirm with a security key instead of a code" in the forms that need
  // the password and a second factor.
  document.querySelectorAll("[data-key-confirm]").forEach(function (box) {
    if (!supported) { return; }
    box.hidden = false;
    var form = box.closest("form"), fb = feedback(box);
    box.querySelector("button").addEventListener("click", function () {
      var code = form.querySelector("input[name=code]");
      if (code) { code.required = false; code.value = ""; }
      if (!form.reportValidity()) { if (code) { code.required = true; } return; }
      fb.working();
      assert(box.getAttribute("data-key-confirm"), fb, box).then(function (cred) {
        form.querySelector("input[name=assertion]").value = JSON.stringify(cred);
        form.submit();
      }, function (e) { if (code) { code.required = true; } fb.fail(e.message); });
    });
  });

  // The Security page: add a key.
  var add = document.getElementById("key-add");
  var nojs = document.querySelector("[data-key-nojs]");
  if (add) {
    var fbAdd = feedback(add);
    if (!supported) {
      if (nojs) { nojs.textContent = add.getAttribute("data-msg-unsupported"); }
    } else {
      if (nojs) { nojs.hidden = true; }
      add.hidden = false;
      var addPrefix = add.getAttribute("data-key-add");
      add.addEventListener("submit", function (ev) {
        ev.preventDefault();
        var body = {
          name: add.elements.namedItem("name").value,
          password: add.elements.namedItem("password").value,
          code: add.elements.code ? add.elements.code.value : ""
        };
        fbAdd.working();
        var confirm = Promise.resolve(null);
        if (add.elements.code && !body.code) {
          confirm = assert(addPrefix, fbAdd, add);
        }
        confirm.then(function (assertion) {
          if (assertion) { body.assertion = assertion; }
          return post(addPrefix + "/webauthn/register/options");
        }).then(function (o) {
          if (!o.ok) { throw new Error(o.message || ""); }
          delete o.ok;
          return navigator.credentials.create({ publicKey: creationOptions(o) }).then(credentialJSON, function () {
            throw new Error(add.getAttribute("data-msg-cancelled"));
          });
        }).then(function (cred) {
          for (var k in body) { if (Object.prototype.hasOwnProperty.call(body, k)) { cred[k] = body[k]; } }
          return post(addPrefix + "/webauthn/register", cred);
        }).then(function (res) {
          if (res.redirect) { window.location.assign(res.redirect); return; }
          fbAdd.fail(res.message);
        }, function (e) { fbAdd.fail(e.message); });
      });
    }
  }
})();
