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

// Drafts: what the user types into a form is kept in this tab's sessionStorage as it is
// typed, so a submission that meets an ended session (sign-in, then back via ?next=) loses
// nothing (ADR 0043). Never kept: passwords, hidden fields (CSRF), files, read-only fields,
// anything inside [data-no-draft], credential autocomplete fields.
(function () {
  "use strict";
  var PREFIX = "armillary.draft:";
  var PENDING = "armillary.draft-pending";
  var SKIPPED = /^(password|hidden|file|submit|button|reset|image|select-multiple)$/;
  var SECRET = /password|one-time-code|cc-/; // autocomplete tokens of credentials
  var CHECKABLE = /^(checkbox|radio)$/;
  var store;
  try {
    store = window.sessionStorage;
  } catch (e) {
    return; // storage refused (privacy settings): forms work as before
  }
  var user = "";

  function kept(field) {
    return (
      field.name &&
      !field.disabled &&
      !field.readOnly &&
      !SKIPPED.test(field.type) &&
      !SECRET.test(field.getAttribute("autocomplete") || "") &&
      !field.closest("[data-no-draft]")
    );
  }

  function drafted(form) {
    return form && form.method === "post" && !form.hasAttribute("data-no-draft");
  }

  function fields(form) {
    return Array.prototype.filter.call(form.elements, kept);
  }

  // Page path + the form's identity (its id, or its action and place among same-action forms).
  function key(form) {
    var action = form.getAttribute("action") || "";
    var same = document.querySelectorAll("form");
    var n = 0;
    for (var i = 0; i < same.length && same[i] !== form; i++) {
      n += (same[i].getAttribute("action") || "") === action ? 1 : 0;
    }
    return PREFIX + window.location.pathname + " " + (form.id || action + "#" + n);
  }

  function save(form) {
    var values = fields(form).map(function (f) {
      return CHECKABLE.test(f.type) ? [f.name, f.checked] : [f.name, f.value];
    });
    if (!values.length) {
      return null;
    }
    try {
      store.setItem(key(form), JSON.stringify({ user: user, values: values }));
    } catch (e) {
      return null; // over the quota: the form still works, without a draft
    }
    return key(form);
  }

  function read(name) {
    try {
      return JSON.parse(store.getItem(name) || "null");
    } catch (e) {
      return null;
    }
  }

  function note(form, name) {
    var p = document.createElement("p");
    var discard = document.createElement("button");
    p.className = "draft-note";
    p.setAttribute("role", "status");
    p.textContent = "Restored what you typed here earlier in this tab. ";
    discard.type = "button";
    discard.textContent = "Discard it";
    discard.addEventListener("click", function () {
      store.removeItem(name);
      form.reset();
      p.remove();
    });
    p.appendChild(discard);
    form.insertBefore(p, form.firstChild);
  }

  // Puts a draft back into its form if the form still has the same fields.
  function restore(form) {
    var name = key(form);
    var draft = read(name);
    var list = fields(form);
    var values = draft && Array.isArray(draft.values) ? draft.values : [];
    if (!values.length || (draft.user && draft.user !== user) || values.length !== list.length) {
      return;
    }
    var changed = false;
    list.forEach(function (f, i) {
      var v = values[i];
      var prop = CHECKABLE.test(f.type) ? "checked" : "value";
      if (v && v[0] === f.name && f[prop] !== v[1]) {
        f[prop] = v[1];
        changed = true;
      }
    });
    if (changed) {
      note(form, name);
    }
  }

  function forget(all) {
    for (var i = store.length - 1; i >= 0; i--) {
      var name = store.key(i);
      if (name && name.indexOf(PREFIX) === 0 && all(read(name))) {
        store.removeItem(name);
      }
    }
    store.removeItem(PENDING);
  }

  function start() {
    var body = document.body;
    var signIn = window.location.pathname === "/ui/login";
    user = body.dataset.user || "";
    // The submission that led here: done with if this page is no sign-in and no error.
    var pending = store.getItem(PENDING);
    store.removeItem(PENDING);
    if (pending && !signIn && (parseInt(body.dataset.status, 10) || 200) < 400) {
      store.removeItem(pending);
    }
    if (user) {
      forget(function (draft) {
        return !draft || (draft.user && draft.user !== user); // another user's, in this tab
      });
    }
    document.addEventListener("input", function (event) {
      if (drafted(event.target.form)) {
        save(event.target.form);
      }
    });
    document.addEventListener("submit", function (event) {
      var form = event.target;
      if (event.defaultPrevented || !drafted(form)) {
        return;
      }
      if (form.getAttribute("action") === "/ui/logout") {
        forget(function () {
          return true;
        });
        return;
      }
      var name = save(form);
      if (name) {
        store.setItem(PENDING, name);
      }
    });
    Array.prototype.forEach.call(document.forms, function (form) {
      if (drafted(form)) {
        restore(form);
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
