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
    if (region && region.classList && region.classList.contains("paused") && event.detail.requestConfig.triggeringEvent
        && event.detail.requestConfig.triggeringEvent.type !== "click" && event.detail.requestConfig.triggeringEvent.type !== "submit") {
      event.preventDefault();
    }
  });
})();
