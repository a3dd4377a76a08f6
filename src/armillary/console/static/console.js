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

// Datasets: the upload form sends its file with XMLHttpRequest, so that the page can show
// how much has gone (upload progress events); the CSRF token travels in a header. Without
// script the form posts nowhere useful, so it stays a script-only feature.
(function () {
  "use strict";

  // An answer that was redirected to sign-in (the session ended): take the tab there.
  function signedOut(xhr) {
    if (xhr.responseURL && xhr.responseURL.indexOf("/ui/login") >= 0) {
      window.location.assign(xhr.responseURL);
      return true;
    }
    return false;
  }

  function wire(form) {
    var bar = form.querySelector("progress");
    var status = form.querySelector("[role=status]");
    var button = form.querySelector("button[type=submit]");
    var token = form.querySelector("input[name=csrf_token]");

    function say(text, failed) {
      status.textContent = text;
      status.classList.toggle("error", !!failed);
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var input = form.querySelector("input[type=file]");
      if (!input.files.length) {
        say("Choose a file first.", true);
        return;
      }
      var body = new FormData();
      body.append("file", input.files[0]);
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("X-CSRF-Token", token ? token.value : "");
      xhr.responseType = "json";
      xhr.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) {
          bar.value = Math.round((100 * e.loaded) / e.total);
          say("Uploading… " + bar.value + "%");
        }
      });
      xhr.addEventListener("load", function () {
        if (signedOut(xhr)) {
          return;
        }
        var answer = xhr.response || {};
        if (xhr.status >= 200 && xhr.status < 300 && answer.url) {
          bar.value = 100;
          say("Uploaded as version " + answer.version + ". Opening it…");
          window.location.assign(answer.url);
        } else {
          say(answer.detail || "The upload failed (" + xhr.status + ").", true);
          button.disabled = false;
        }
      });
      xhr.addEventListener("error", function () {
        say("The upload failed: the connection was lost.", true);
        button.disabled = false;
      });
      button.disabled = true;
      bar.hidden = false;
      bar.value = 0;
      say("Uploading…");
      xhr.send(body);
    });
  }

  // A task's log, followed: reads from the offset the last answer gave, appends, and stops
  // once the server says the task ended and all of it was read; paused while hidden.
  function follow(pre) {
    var state = document.getElementById("log-state");
    var offset = 0;
    var timer = null;
    var done = false;
    var quiet = 0;

    function url() {
      var base = pre.dataset.logUrl;
      return base + (base.indexOf("?") < 0 ? "?" : "&") + "offset=" + offset;
    }

    function later() {
      // 1 s while text arrives, slower (up to 8 s) while the log is quiet.
      timer = window.setTimeout(poll, Math.min(1000 * Math.pow(2, quiet), 8000));
    }

    function poll() {
      timer = null;
      if (done || document.hidden) {
        return;
      }
      var xhr = new XMLHttpRequest();
      xhr.open("GET", url());
      xhr.addEventListener("load", function () {
        if (signedOut(xhr)) {
          return;
        }
        if (xhr.status !== 200) {
          state.textContent = "The log cannot be read (" + xhr.status + ").";
          return;
        }
        var text = xhr.responseText;
        if (text) {
          var bottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
          pre.appendChild(document.createTextNode(text));
          if (bottom) {
            pre.scrollTop = pre.scrollHeight;
          }
          quiet = 0;
        } else {
          quiet = Math.min(quiet + 1, 3);
        }
        offset = parseInt(xhr.getResponseHeader("X-Log-Offset"), 10) || offset;
        done = xhr.getResponseHeader("X-Log-Done") === "true";
        if (done) {
          pre.dataset.logDone = "true";
          state.textContent = pre.textContent ? "End of log." : "This attempt wrote no output.";
        } else {
          state.textContent = "Following the log…";
          later();
        }
      });
      xhr.addEventListener("error", later);
      xhr.send();
    }

    document.addEventListener("visibilitychange", function () {
      if (!document.hidden && timer === null && !done) {
        poll();
      }
    });
    poll();
  }

  function start() {
    var forms = document.querySelectorAll("form[data-upload]");
    for (var i = 0; i < forms.length; i++) {
      wire(forms[i]);
    }
    var logs = document.querySelectorAll("pre[data-log-url]");
    for (var j = 0; j < logs.length; j++) {
      follow(logs[j]);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
