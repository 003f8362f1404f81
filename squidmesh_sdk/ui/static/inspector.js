// squidmesh inspector: live refresh. No framework, no inline script (the CSP forbids it).
// Everything inserted comes from the inspector's own server, which escapes every value.
(function () {
  "use strict";

  function every(seconds, task) {
    var busy = false;
    window.setInterval(function () {
      if (busy || document.hidden) { return; }
      busy = true;
      task().then(function () { busy = false; }, function () { busy = false; });
    }, seconds * 1000);
  }

  // Runs page: fetch the same URL's table rows and swap them in.
  var rows = document.getElementById("runs-rows");
  if (rows && rows.dataset.live) {
    every(Number(rows.dataset.live), function () {
      return fetch(window.location.href, {
        headers: { "X-Squidmesh-Fragment": "rows" },
        credentials: "same-origin",
      }).then(function (response) {
        if (!response.ok) { return; }
        return response.text().then(function (html) { rows.innerHTML = html; });
      });
    });
  }

  // Run page: poll the status; reload when the run changed, unless a form is being filled in.
  var body = document.body;
  if (body.dataset.runStatus && body.dataset.live) {
    var changed = document.getElementById("run-changed");
    every(Number(body.dataset.live), function () {
      return fetch(body.dataset.runStatus, { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (status) {
          if (!status || status.updated_at === body.dataset.runUpdated) { return; }
          var typing = Array.prototype.some.call(
            document.querySelectorAll("form.action input[type=text]"),
            function (input) { return input.value !== "" || input === document.activeElement; }
          );
          if (typing) {
            if (changed) { changed.classList.remove("hidden"); }
          } else {
            window.location.reload();
          }
        });
    });
  }
})();
