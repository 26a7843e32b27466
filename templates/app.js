// caddy two-factor: the pages' only script. Every page works without it;
// it adds two buttons to the backup codes page: copy the codes to the
// clipboard, and print them. The buttons are hidden until this runs.
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
