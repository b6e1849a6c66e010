// manage web (§23): with JavaScript, the tables of the frontpage and of a
// job page refresh every 5 s. The page is fetched again as served and each
// element marked data-live is swapped for its new self, found by its id:
// the rest of the page (the scroll position, a half-filled form, the focus)
// stays as it is. Without JavaScript the page is complete as served.
(function () {
  "use strict";
  var PERIOD_MS = 5000;
  var busy = false;

  function refresh() {
    var live = document.querySelectorAll("[data-live][id]");
    if (busy || document.hidden || live.length === 0) {
      return;
    }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        return response.ok ? response.text() : null;
      })
      .then(function (text) {
        if (text === null) {
          return;
        }
        var fresh = new DOMParser().parseFromString(text, "text/html");
        live.forEach(function (old) {
          // Leave alone what the user is on (a focused link in a table).
          if (old.contains(document.activeElement)) {
            return;
          }
          var next = fresh.getElementById(old.id);
          if (next && next.outerHTML !== old.outerHTML) {
            old.replaceWith(document.importNode(next, true));
          }
        });
      })
      .catch(function () {
        // The server is away: try again at the next tick.
      })
      .then(function () {
        busy = false;
      });
  }

  window.setInterval(refresh, PERIOD_MS);
})();
