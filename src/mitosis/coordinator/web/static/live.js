/* Live regions: an element with data-live-url is refreshed from a JSON fragment endpoint that
 * answers {"html": "...", "final": bool}. WHEN to refresh is decided by a trigger: with
 * data-live-events, an EventSource on the dashboard's event stream (/ui/events, the same service
 * as GET /events) refreshes the region shortly after each matching event (debounced); if the
 * stream cannot be opened, or keeps failing, the trigger falls back to polling every two seconds.
 * The trigger in use is shown as data-live-mode="sse" | "poll" on the region and on <html>. */
(function () {
  "use strict";

  var POLL_MS = 2000;
  var DEBOUNCE_MS = 300;
  var MAX_FAILURES = 3;

  function mark(region, mode) {
    region.setAttribute("data-live-mode", mode);
    document.documentElement.setAttribute("data-live-mode", mode);
  }

  function pollTrigger(region, refresh) {
    var timer = null;
    var stopped = false;
    mark(region, "poll");
    function tick() {
      refresh().then(function () {
        if (!stopped) timer = setTimeout(tick, POLL_MS);
      });
    }
    timer = setTimeout(tick, POLL_MS);
    return function stop() {
      stopped = true;
      clearTimeout(timer);
    };
  }

  function eventTrigger(region, refresh) {
    var url = region.getAttribute("data-live-events");
    if (!url || !window.EventSource) return pollTrigger(region, refresh);
    var source = new EventSource(url);
    var timer = null;
    var failures = 0;
    var missed = false;
    var stopPolling = null;
    var stopped = false;

    function soon() {
      if (document.hidden) {
        missed = true; // refreshed when the page is shown again
        return;
      }
      if (timer) return;
      timer = setTimeout(function () {
        timer = null;
        refresh();
      }, DEBOUNCE_MS);
    }

    function fallBack() {
      source.close();
      if (!stopped && !stopPolling) stopPolling = pollTrigger(region, refresh);
    }

    source.onopen = function () {
      failures = 0;
      mark(region, "sse");
      soon(); // changes between the page render and the stream's start
    };
    ["task", "worker", "reset"].forEach(function (kind) {
      source.addEventListener(kind, soon);
    });
    source.onerror = function () {
      // CLOSED: refused (not an event stream, e.g. the session ended); otherwise it reconnects
      // by itself with Last-Event-ID, unless that keeps failing.
      failures += 1;
      if (source.readyState === EventSource.CLOSED || failures >= MAX_FAILURES) fallBack();
    };
    function onVisible() {
      if (!document.hidden && missed) {
        missed = false;
        soon();
      }
    }
    document.addEventListener("visibilitychange", onVisible);
    return function stop() {
      stopped = true;
      clearTimeout(timer);
      source.close();
      document.removeEventListener("visibilitychange", onVisible);
      if (stopPolling) stopPolling();
    };
  }

  // Keep keyboard focus on the same link or button when a region's HTML is replaced.
  function focusKey(el) {
    if (!el || !el.getAttribute) return null;
    return el.getAttribute("href") || el.getAttribute("formaction") || el.getAttribute("aria-label") || el.id || null;
  }

  function restoreFocus(region, key) {
    if (!key) return;
    var candidates = region.querySelectorAll("a, button, input, select, textarea");
    for (var i = 0; i < candidates.length; i++) {
      if (focusKey(candidates[i]) === key) {
        candidates[i].focus();
        return;
      }
    }
  }

  function attach(region) {
    var url = region.getAttribute("data-live-url");
    var last = null;
    var stop = function () {};
    var busy = null;
    var again = false;
    function load() {
      return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (response.status === 401 || response.redirected) {
            window.location.reload();
            return null;
          }
          return response.ok ? response.json() : null;
        })
        .then(function (data) {
          if (!data) return;
          if (data.html !== last) {
            var active = document.activeElement;
            var key = region.contains(active) ? focusKey(active) : null;
            region.innerHTML = data.html;
            last = data.html;
            restoreFocus(region, key);
            region.setAttribute("data-live-updates", String(Number(region.getAttribute("data-live-updates") || 0) + 1));
            document.dispatchEvent(new CustomEvent("mito:updated", { detail: region }));
          }
          if (data.final) stop();
        })
        .catch(function () {
          /* A network hiccup: the next trigger tries again. */
        });
    }
    // One request at a time; a trigger during a request asks for one more afterwards.
    function refresh() {
      if (document.hidden) return Promise.resolve();
      if (busy) {
        again = true;
        return busy;
      }
      busy = load().then(function () {
        busy = null;
        if (again) {
          again = false;
          return refresh();
        }
      });
      return busy;
    }
    if (!region.hasAttribute("data-live-final")) {
      stop = region.hasAttribute("data-live-events") ? eventTrigger(region, refresh) : pollTrigger(region, refresh);
    }
  }

  document.querySelectorAll("[data-live-url]").forEach(attach);
})();
