// The dashboard's change-stamp checker (panel.js starts it): asks /live every few tenths of a second
// and tells the page each stamp, or that the session is gone. A worker's timers keep their pace in a
// hidden tab, where a page's own are slowed down to once a minute.
"use strict";

var url = null;
var every = 1000;

function check() {
  // HX-Trigger "live": a passive check, which does not keep an unattended session signed in.
  fetch(url, { headers: { "HX-Request": "true", "HX-Trigger": "live" }, credentials: "same-origin", cache: "no-store" })
    .then(function (answer) {
      if (answer.redirected || answer.headers.has("HX-Redirect")) {
        self.postMessage({ signedOut: true });
        return null;
      }
      return answer.ok ? answer.json() : null; // failing: the page's slower refresh shows it
    })
    .then(function (body) {
      if (body && url) self.postMessage({ stamp: body.stamp });
    })
    .catch(function () {}) // the network is down: the page's own refresh reports that
    .then(function () {
      if (url) self.setTimeout(check, every);
    });
}

self.onmessage = function (event) {
  var first = url === null;
  url = event.data.url;
  every = Math.max(100, event.data.seconds * 1000);
  if (first) self.setTimeout(check, every);
};
