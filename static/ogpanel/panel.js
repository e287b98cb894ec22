// ogpanel's only script. Kept in a file (not inline) so the Content-Security-Policy can forbid inline code.
(function () {
  "use strict";

  // Flash messages sent by the server in an HX-Trigger header ("ogpanel:flash").
  document.body.addEventListener("ogpanel:flash", function (event) {
    var area = document.getElementById("flash");
    if (!area) return;
    var p = document.createElement("p");
    p.className = "msg msg-" + (event.detail.level || "success");
    p.textContent = event.detail.message;
    area.replaceChildren(p);
  });

  // An htmx request that could not reach the panel at all (network down, panel restarting).
  document.body.addEventListener("htmx:sendError", function () {
    var area = document.getElementById("flash");
    if (!area) return;
    var p = document.createElement("p");
    p.className = "msg msg-error";
    p.setAttribute("role", "alert");
    p.textContent = "The panel could not be reached. Check your connection; the page will keep trying.";
    area.replaceChildren(p);
  });

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

  // A form opened in place (#action-panel) takes the keyboard focus, as a new page would.
  document.body.addEventListener("htmx:afterSwap", function (event) {
    var panel = event.detail.target;
    if (!panel || panel.id !== "action-panel") return;
    var field = panel.querySelector("[aria-invalid=true], input:not([type=hidden]), select, textarea, button");
    if (field) field.focus();
  });

  // "Cancel" links in a panel opened in place: empty the panel; without JavaScript they navigate.
  document.body.addEventListener("click", function (event) {
    var link = event.target.closest("[data-dismiss]");
    if (!link) return;
    var panel = document.getElementById(link.dataset.dismiss);
    if (!panel || !panel.contains(link)) return;
    event.preventDefault();
    panel.replaceChildren();
  });
})();
