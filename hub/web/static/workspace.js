// Small page behaviour shared by every workspace page (no inline scripts: the CSP forbids them).
"use strict";
(function () {
  // htmx requests carry the session's CSRF token, like the forms do.
  document.addEventListener("htmx:configRequest", function (event) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) {
      event.detail.headers["X-CSRF-Token"] = meta.getAttribute("content");
    }
  });
})();
