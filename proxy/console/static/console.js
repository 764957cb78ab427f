// The one script of the console: after a POST, the address bar (and a reload) shows the
// plain page again, so a reload neither repeats the action nor shows a once-only key again.
"use strict";
const target = document.body.dataset.replace;
if (target && window.location.pathname !== target) {
    window.history.replaceState(null, "", target);
}

// Times are written in UTC (readable without JavaScript); show them in the viewer's own
// time zone, the UTC text kept on hover.
for (const time of document.querySelectorAll("time[data-local]")) {
    const at = new Date(time.getAttribute("datetime"));
    if (!Number.isNaN(at.getTime())) {
        time.textContent = at.toLocaleString(undefined, {
            year: "numeric", month: "2-digit", day: "2-digit",
            hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
        });
    }
}
