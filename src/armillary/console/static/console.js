// Armillary console: live views. No inline script anywhere (the CSP forbids it): pages mark
// a live region with data-live-url, and this file polls it through htmx.
(function () {
  "use strict";

  // Polls one live region: at data-live-min ms, doubling up to data-live-max while the
  // server's fingerprint stays the same; paused while the tab is hidden; stopped when the
  // server renders the region without data-live-url (the job finished).
  function follow(id) {
    var timer = null;
    var delay = null;

    function region() {
      return document.getElementById(id);
    }

    function schedule() {
      var el = region();
      if (!el || !el.dataset.liveUrl) {
        return;
      }
      var min = parseInt(el.dataset.liveMin, 10) || 1000;
      var max = parseInt(el.dataset.liveMax, 10) || 15000;
      delay = delay === null ? min : Math.min(delay * 2, max);
      timer = window.setTimeout(poll, delay);
    }

    function poll() {
      timer = null;
      if (document.hidden) {
        return; // resumed by visibilitychange
      }
      var el = region();
      if (!el || !el.dataset.liveUrl) {
        return;
      }
      var before = el.dataset.fingerprint;
      window.htmx
        .ajax("GET", el.dataset.liveUrl, { target: "#" + id, swap: "outerHTML" })
        .then(function () {
          var now = region();
          if (now && now.dataset.fingerprint !== before) {
            delay = null; // something moved: look again soon
          }
          schedule();
        }, schedule);
    }

    document.addEventListener("visibilitychange", function () {
      if (document.hidden) {
        if (timer !== null) {
          window.clearTimeout(timer);
          timer = null;
        }
      } else if (timer === null) {
        delay = null;
        poll();
      }
    });
    schedule();
  }

  function start() {
    var regions = document.querySelectorAll("[data-live-url]");
    for (var i = 0; i < regions.length; i++) {
      if (regions[i].id) {
        follow(regions[i].id);
      }
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
