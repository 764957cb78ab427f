// The one script of the console: after a POST, the address bar (and a reload) shows the
// plain page again, so a reload neither repeats the action nor shows a once-only key again.
"use strict";
const target = document.body.dataset.replace;
if (target && window.location.pathname !== target) {
    window.history.replaceState(null, "", target);
}
