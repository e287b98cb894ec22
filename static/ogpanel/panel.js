// ogpanel's only script. Kept in a file (not inline) so the Content-Security-Policy can forbid inline code.
// Each block below is one behaviour, on its own: add new ones beside them.
(function () {
  "use strict";

  function flashArea() {
    return document.getElementById("flash");
  }

  function showFlash(level, message) {
    var area = flashArea();
    if (!area) return;
    var p = document.createElement("p");
    p.className = "msg msg-" + level;
    if (level === "error") p.setAttribute("role", "alert");
    p.textContent = message;
    area.replaceChildren(p);
  }

  // --- flash messages ---------------------------------------------------------------------------

  // Flash messages sent by the server in an HX-Trigger header ("ogpanel:flash").
  document.body.addEventListener("ogpanel:flash", function (event) {
    showFlash(event.detail.level || "success", event.detail.message);
  });

  // A new action clears the previous one's flash: an error must never share the screen with an
  // older success. An action is what a person starts: a trusted event (a click, a submit, a
  // change). Refreshes are not: a timer's carries no event, and one asked for by the page or the
  // server (ogpanel:groups-changed, a change stamp) comes from a script, so the flash stays.
  document.body.addEventListener("htmx:beforeRequest", function (event) {
    var cause = event.detail.requestConfig && event.detail.requestConfig.triggeringEvent;
    if (!cause || !cause.isTrusted) return;
    var area = flashArea();
    if (area) area.replaceChildren();
  });

  // An htmx request that could not reach the panel at all (network down, panel restarting).
  document.body.addEventListener("htmx:sendError", function () {
    showFlash("error", "The panel could not be reached. Check your connection; the page will keep trying.");
  });

  // --- errors render in place ---------------------------------------------------------------------

  // The panel answers htmx with fragments, errors included (base.html swaps 4xx/5xx). A whole
  // document (a crash page, a CSRF failure, a proxy's error page) must not be poured into a table
  // cell or replace the page: it becomes one line in the flash area instead.
  document.body.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    if (!xhr || xhr.status < 400) return;
    var body = (xhr.responseText || "").trimStart().slice(0, 200).toLowerCase();
    if (body.indexOf("<!doctype") !== 0 && body.indexOf("<html") !== 0) return;
    event.detail.shouldSwap = false;
    var title = new DOMParser().parseFromString(xhr.responseText, "text/html").title;
    showFlash("error", "The panel answered HTTP " + xhr.status + (title ? " (" + title.trim() + ")" : "") +
      ". Nothing on this page changed; try again, or reload the page.");
  });

  // --- pausing self-refreshing regions -------------------------------------------------------------

  // Pause/resume for self-refreshing regions: a checkbox with data-pauses="<id of the region>".
  document.body.addEventListener("change", function (event) {
    var box = event.target.closest("[data-pauses]");
    if (!box) return;
    var region = document.getElementById(box.dataset.pauses);
    if (region) region.classList.toggle("paused", box.checked);
  });
  document.body.addEventListener("htmx:beforeRequest", function (event) {
    var region = event.detail.elt;
    if (!region || !region.classList || !region.classList.contains("paused")) return;
    // htmx's "every Ns" polls carry no triggering event at all; only a person's click or
    // submit, or a change they just made (ogpanel:groups-changed), may refresh a paused region.
    var cause = event.detail.requestConfig.triggeringEvent;
    var byPerson = cause && (cause.type === "click" || cause.type === "submit" || cause.type === "ogpanel:groups-changed");
    if (!byPerson) event.preventDefault();
  });

  // --- refreshes keep what the person is doing --------------------------------------------------

  // Self-refreshing regions swap with idiomorph ("morph:innerHTML"): rows are matched by id and
  // changed in place, so focus, scroll and selection stay whatever refreshed them (the timer, a
  // change event, a change stamp). A row's highlight (data-acting, set below) is the page's own
  // state, not the server's: a morph must not take it away.
  document.addEventListener("DOMContentLoaded", function () {
    if (!window.Idiomorph || !window.Idiomorph.defaults) return;
    window.Idiomorph.defaults.callbacks.beforeAttributeUpdated = function (name, element, kind) {
      return !(name === "data-acting" && kind === "remove");
    };
  });

  // --- live: the change stamp, the tab title, trip notifications -----------------------------------

  // The dashboard checks a few-byte stamp (data-live-url) every data-live-seconds and fetches its
  // table only when the stamp differs from the one the table was rendered with (#live-state). A
  // paused table is not fetched; the stamp is checked again once it resumes. Without JavaScript
  // none of this runs and the page is simply what the server rendered.
  var live = document.querySelector("[data-live-url]");
  var seenTrips = null; // trip ids already on screen; only later ones raise a notification
  var liveBusy = false; // a table fetch is out: wait for its stamp before asking for another
  var liveStamp = null; // the stamp last answered

  function liveState() {
    return document.getElementById("live-state");
  }

  function tripIds() {
    return Array.prototype.map.call(document.querySelectorAll("[data-trip]"), function (item) {
      return item.dataset.trip;
    });
  }

  // "(3 triggered) Order groups · ogpanel": the count of the whole book, as the table last showed it.
  function showTriggeredInTitle() {
    var state = liveState();
    if (!state) return;
    var count = parseInt(state.dataset.triggered || "0", 10);
    var base = document.title.replace(/^\(\d+ triggered\) /, "");
    document.title = count > 0 ? "(" + count + " triggered) " + base : base;
  }

  function notifyNewTrips() {
    var now = tripIds();
    var before = seenTrips || [];
    seenTrips = now;
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    now.forEach(function (id) {
      if (before.indexOf(id) !== -1) return;
      var item = document.querySelector('[data-trip="' + id + '"]');
      var text = item ? item.textContent.replace(/\s+/g, " ").trim() : "";
      // The tag makes the same trip one notification, however many tabs show it.
      new Notification("Order group tripped", { body: text, tag: "ogpanel-trip-" + id });
    });
  }

  // What the stamp checker (live-worker.js) heard: a stamp, or that the session is gone.
  function heard(message) {
    if (message.signedOut) {
      window.location.reload(); // lands on the sign-in page, with this page to come back to
      return;
    }
    liveStamp = message.stamp;
    var region = document.getElementById("groups");
    var state = liveState();
    if (liveBusy || !region || !state || region.classList.contains("paused")) return; // the next check asks again
    if (liveStamp === state.dataset.stamp) return;
    liveBusy = true;
    document.body.dispatchEvent(new CustomEvent("ogpanel:live"));
  }

  if (live) {
    seenTrips = tripIds();
    showTriggeredInTitle();
    document.body.addEventListener("htmx:afterRequest", function (event) {
      if (!event.detail.elt || event.detail.elt.id !== "groups") return;
      liveBusy = false;
      // A table that could not be fetched is not asked for again at every check, only when the
      // stamp moves on (or at the slower refresh).
      var state = liveState();
      if (!event.detail.successful && state && liveStamp) state.dataset.stamp = liveStamp;
    });
    document.body.addEventListener("htmx:afterSettle", function (event) {
      if (!event.detail.target || event.detail.target.id !== "groups") return;
      showTriggeredInTitle();
      notifyNewTrips();
    });
    // A worker, not a timer of the page's: a hidden tab's timers are slowed to once a minute after a
    // few minutes, and a tab in the background is where a trip's notification matters most.
    var checker = new Worker(live.dataset.liveWorker);
    checker.onmessage = function (event) {
      heard(event.data);
    };
    checker.postMessage({ url: live.dataset.liveUrl, seconds: parseFloat(live.dataset.liveSeconds) });
  }

  // "Notify me of trips": shown only where the browser can notify and has not been refused; the
  // permission is asked on that press, never on loading the page.
  var notifyButton = document.querySelector("[data-notify-trips]");

  function showNotifyButton() {
    if (!notifyButton || !("Notification" in window) || Notification.permission === "denied") {
      if (notifyButton) notifyButton.hidden = true;
      return;
    }
    var on = Notification.permission === "granted";
    notifyButton.hidden = false;
    notifyButton.textContent = on ? "Trip notifications on" : "Notify me of trips";
    notifyButton.disabled = on;
  }

  if (notifyButton) {
    showNotifyButton();
    notifyButton.addEventListener("click", function () {
      Notification.requestPermission().then(showNotifyButton);
    });
  }

  // --- the action panel (#action-panel): a confirmation or form opened in place --------------------

  var opener = null; // the link that opened the panel, to give the focus back to

  function actionPanel() {
    return document.getElementById("action-panel");
  }

  function actingRow() {
    return document.querySelector("[data-acting]");
  }

  // Under the row it acts on, as a popover over the rows below (so the table never shifts).
  function anchorPanel() {
    var panel = actionPanel();
    var row = actingRow();
    if (!panel) return;
    if (!row || !panel.firstElementChild) {
      panel.classList.remove("anchored");
      panel.style.top = "";
      return;
    }
    panel.classList.add("anchored"); // out of the flow first, so the row is measured where it stays
    var host = panel.offsetParent || document.body;
    var top = row.getBoundingClientRect().bottom - host.getBoundingClientRect().top;
    panel.style.top = Math.round(top) + "px";
  }

  // Empty the panel, drop the row's highlight and give the focus back to what opened it (or its row).
  function closePanel() {
    var panel = actionPanel();
    if (panel) panel.replaceChildren();
    var row = actingRow();
    if (row) row.removeAttribute("data-acting");
    anchorPanel();
    var back = opener && document.contains(opener) ? opener : row && row.querySelector("a, button");
    opener = null;
    if (back) back.focus({ preventScroll: true });
  }

  // Which row an opener belongs to, remembered as the request for the panel goes out.
  document.body.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    var target = event.detail.target;
    if (!target || target.id !== "action-panel" || !elt || elt.tagName === "FORM") return;
    opener = elt;
    var current = actingRow();
    if (current) current.removeAttribute("data-acting");
    var row = elt.closest("tr[id]");
    if (row) row.setAttribute("data-acting", "");
  });

  document.body.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (!target || target.id !== "action-panel") return;
    if (!target.firstElementChild) {
      closePanel(); // done (a success answers with an empty panel): back to the row acted on
      return;
    }
    anchorPanel();
    // The form takes the keyboard focus, as a new page would (the first invalid field after an error).
    var field = target.querySelector("[aria-invalid=true], input:not([type=hidden]), select, textarea, button");
    if (field) field.focus({ preventScroll: true });
    if (!isInView(target)) target.scrollIntoView({ block: "nearest" });
  });

  // A refresh may have moved the row (triggered rows go first): the panel follows it.
  document.body.addEventListener("htmx:afterSettle", function (event) {
    if (event.detail.target && event.detail.target.id !== "action-panel") anchorPanel();
  });
  window.addEventListener("resize", anchorPanel);

  function isInView(element) {
    var box = element.getBoundingClientRect();
    return box.top >= 0 && box.bottom <= window.innerHeight;
  }

  // "Cancel" links in a panel opened in place: empty the panel; without JavaScript they navigate.
  document.body.addEventListener("click", function (event) {
    var link = event.target.closest("[data-dismiss]");
    if (!link) return;
    var panel = document.getElementById(link.dataset.dismiss);
    if (!panel || !panel.contains(link)) return;
    event.preventDefault();
    if (panel.id === "action-panel") closePanel();
    else panel.replaceChildren();
  });

  // Esc closes the panel (or the phone's menu) and gives the focus back.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    var panel = actionPanel();
    if (panel && panel.firstElementChild && opener) { // opened in place (a page of its own has no opener)
      event.preventDefault();
      closePanel();
      return;
    }
    var menu = document.getElementById("topbar-menu");
    if (menu && menu.classList.contains("open")) toggleMenu(false);
  });

  // --- the header's menu on a phone --------------------------------------------------------------

  // Folded behind "Menu" on a narrow screen (panel.css); without JavaScript it simply stays open.
  var menuButton = document.querySelector(".menu-toggle");

  function toggleMenu(open) {
    var menu = document.getElementById("topbar-menu");
    if (!menu || !menuButton) return;
    menu.classList.toggle("open", open);
    menuButton.setAttribute("aria-expanded", open ? "true" : "false");
    if (!open) menuButton.focus({ preventScroll: true });
  }

  if (menuButton) {
    document.documentElement.classList.add("menu-folds");
    menuButton.hidden = false;
    menuButton.addEventListener("click", function () {
      toggleMenu(menuButton.getAttribute("aria-expanded") !== "true");
    });
  }
})();
