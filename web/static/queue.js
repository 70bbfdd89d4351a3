// The queue page's live updates (progressive enhancement: without this script the page
// works and is reloaded by hand). A server-sent event says an alert of the team changed;
// the page then re-reads its table. A new red alert goes to the top (the server's order),
// flashes, is announced to screen readers and counted in the page title.
(function () {
  "use strict";
  var queue = document.getElementById("queue");
  var status = document.getElementById("live-status");
  if (!queue || !window.EventSource || !window.fetch) { return; }
  var baseTitle = document.title.replace(/^\(\d+ red\) /, "");
  var known = {};
  var pending = false;
  var loading = false;

  function redRows(root) {
    return Array.prototype.slice.call(root.querySelectorAll("tr[data-priority='red']"));
  }
  redRows(queue).forEach(function (row) { known[row.dataset.alert] = true; });

  function say(text) { if (status) { status.textContent = text; } }

  function busy() {
    // Someone is typing a reason or a note in the table: do not pull it from under them.
    var el = document.activeElement;
    return el && queue.contains(el) && /^(INPUT|SELECT|TEXTAREA)$/.test(el.tagName);
  }

  function setTitle(red) {
    document.title = (red > 0 ? "(" + red + " red) " : "") + baseTitle;
  }

  function refresh() {
    if (busy()) { pending = true; say("Queue changed: it updates when you leave the form."); return; }
    if (loading) { pending = true; return; }
    loading = true;
    pending = false;
    fetch("/queue/table", { credentials: "same-origin", redirect: "manual", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.type === "opaqueredirect" || response.status === 303 || response.status === 401) {
          signedOut();
          return null;
        }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        var red = parseInt(response.headers.get("X-Homeward-Red") || "0", 10);
        return response.text().then(function (html) { return { html: html, red: red }; });
      })
      .then(function (page) {
        if (!page) { return; }
        var open = {};
        queue.querySelectorAll("details[open]").forEach(function (d) {
          var row = d.closest("tr");
          if (row) { open[row.dataset.alert + ":" + d.querySelector("summary").textContent.trim()] = true; }
        });
        var focused = document.activeElement && queue.contains(document.activeElement) ? document.activeElement.id : null;
        queue.innerHTML = page.html;

        queue.querySelectorAll("details").forEach(function (d) {
          var row = d.closest("tr");
          if (row && open[row.dataset.alert + ":" + d.querySelector("summary").textContent.trim()]) { d.open = true; }
        });
        // Focus goes back where it was (after the open forms are open again).
        if (focused && document.getElementById(focused)) { document.getElementById(focused).focus(); }
        var fresh = redRows(queue).filter(function (row) { return !known[row.dataset.alert]; });
        fresh.forEach(function (row) { row.classList.add("hw-new"); known[row.dataset.alert] = true; });
        setTitle(page.red);
        if (fresh.length) {
          var who = fresh[0].querySelector("td:nth-child(2) a");
          say("New red alert" + (who ? " for " + who.textContent : "") + ". Live: updated " + new Date().toLocaleTimeString());
        } else {
          say("Live: updated " + new Date().toLocaleTimeString());
        }
      })
      .catch(function () { say("Could not update the queue; retrying."); pending = true; })
      .then(function () { loading = false; if (pending && !busy()) { setTimeout(refresh, 500); } });
  }

  function signedOut() {
    source.close();
    document.title = "Signed out – queue not live";
    var banner = document.createElement("div");
    banner.className = "nhsuk-error-summary";
    banner.setAttribute("role", "alert");
    banner.innerHTML = '<h2 class="nhsuk-error-summary__title">You have been signed out</h2>' +
      '<div class="nhsuk-error-summary__body"><p>This queue is no longer updating. ' +
      '<a href="/sign-in?next=/queue">Sign in again</a> to carry on.</p></div>';
    queue.parentNode.insertBefore(banner, queue);
    say("Signed out: the queue is not live.");
  }

  queue.addEventListener("focusout", function () {
    setTimeout(function () { if (pending && !busy()) { refresh(); } }, 100);
  });

  var source = new EventSource("/queue/events");
  source.addEventListener("open", function () { document.body.dataset.live = "open"; refresh(); });
  source.addEventListener("alert", refresh);
  source.addEventListener("resync", refresh);
  source.addEventListener("signed-out", signedOut);
  source.addEventListener("error", function () {
    document.body.dataset.live = "reconnecting";
    say("Connection lost: reconnecting…");
  });
})();
