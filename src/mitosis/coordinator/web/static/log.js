/* Live log tail of the task page: reads /ui/tasks/{uuid}/log (NDJSON frames of the coordinator's
 * log service, one offset per stream) and appends the text to a <pre>, keeping only the last
 * data-log-cap characters. A dropped connection resumes from the offsets; once the task is
 * archived (409) the std-log artifact's text, unpacked by the server, replaces the tail. */
(function () {
  "use strict";

  var card = document.getElementById("log");
  if (!card || !window.fetch || !window.TextDecoder) return;
  var pre = document.getElementById("log-text");
  var stateText = document.getElementById("log-state");
  var url = card.getAttribute("data-log-url");
  var cap = Number(card.getAttribute("data-log-cap")) || 1048576;
  var TRIMMED = "[… earlier output trimmed …]\n";

  var buf = "";
  var trimmed = false;
  var offsets = { stdout: 0, stderr: 0 };
  var decoders = {};
  var ended = false;
  var sawGap = false;
  var paint = null;
  var retryMs = 1000;

  function resetDecoders() {
    decoders = { stdout: new TextDecoder("utf-8"), stderr: new TextDecoder("utf-8") };
  }
  resetDecoders();

  function setState(text, mode) {
    stateText.textContent = text;
    if (mode) card.setAttribute("data-log-mode", mode);
  }

  function atBottom() {
    return pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
  }

  function render() {
    paint = null;
    var follow = atBottom();
    pre.textContent = (trimmed ? TRIMMED : "") + buf;
    if (follow) pre.scrollTop = pre.scrollHeight;
  }

  function append(text) {
    if (!text) return;
    buf += text;
    if (buf.length > cap) {
      buf = buf.slice(buf.length - cap);
      trimmed = true;
    }
    if (!paint) paint = window.requestAnimationFrame ? requestAnimationFrame(render) : setTimeout(render, 50);
  }

  function bytesOf(b64) {
    var raw = atob(b64);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }

  function handle(frame) {
    if (frame.restart) {
      buf = "";
      trimmed = false;
      offsets = { stdout: 0, stderr: 0 };
      resetDecoders();
      append("[the task was re-queued; its output starts again]\n");
      return;
    }
    if (frame.end) {
      ended = true;
      if (sawGap || trimmed) {
        loadArchived();
        return;
      }
      setState(frame.state ? "Ended (" + frame.state + ")" + (buf ? "" : "; no output") : "Ended", "ended");
      return;
    }
    var stream = frame.stream;
    if (!(stream in offsets)) return;
    if (frame.skipped) {
      sawGap = true;
      append("[… " + frame.skipped + " bytes of " + stream + " no longer stored …]\n");
      offsets[stream] = frame.offset + frame.skipped;
      return;
    }
    if (typeof frame.data === "string") {
      var bytes = bytesOf(frame.data);
      append(decoders[stream].decode(bytes, { stream: true }));
      offsets[stream] = frame.offset + bytes.length;
      setState("Live", "live");
    }
  }

  function retryLater() {
    if (ended) return;
    setTimeout(follow, retryMs);
    retryMs = Math.min(retryMs * 2, 15000);
  }

  function follow() {
    var query = "?stdout=" + offsets.stdout + "&stderr=" + offsets.stderr + "&follow=1";
    fetch(url + query, { credentials: "same-origin", headers: { Accept: "application/x-ndjson" } })
      .then(function (response) {
        if (response.redirected) {
          window.location.reload();
          return null;
        }
        if (response.status === 409) {
          loadArchived();
          return null;
        }
        if (!response.ok || !response.body) {
          if (response.status === 403 || response.status === 404) {
            ended = true;
            setState("The log cannot be read.", "error");
          } else {
            retryLater();
          }
          return null;
        }
        if (card.getAttribute("data-log-mode") !== "live") setState("Waiting for output…", "live");
        var reader = response.body.getReader();
        var decoder = new TextDecoder("utf-8");
        var pending = "";
        function pump() {
          return reader.read().then(function (chunk) {
            if (chunk.done) {
              retryLater();
              return;
            }
            retryMs = 1000;
            pending += decoder.decode(chunk.value, { stream: true });
            var lines = pending.split("\n");
            pending = lines.pop();
            for (var i = 0; i < lines.length; i++) {
              if (lines[i].trim()) handle(JSON.parse(lines[i]));
            }
            if (ended) {
              reader.cancel().catch(function () {});
              return;
            }
            return pump();
          });
        }
        return pump();
      })
      .catch(function () {
        retryLater();
      });
  }

  function loadArchived() {
    ended = true;
    setState("Loading std-log…", null);
    fetch(url + "/archived", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (data) {
          if (!response.ok) {
            setState(response.status === 404 ? "Ended; no output was captured." : data.msg || "The log cannot be read.", "archived");
            return;
          }
          buf = "";
          trimmed = !!data.truncated;
          append(data.stdout || "");
          if (data.stderr) append((data.stdout && data.stdout.slice(-1) !== "\n" ? "\n" : "") + "--- stderr ---\n" + data.stderr);
          render();
          setState("Ended; the output from std-log.tar.gz" + (data.truncated ? " (last MiB of each stream)" : ""), "archived");
        });
      })
      .catch(function () {
        setState("The log cannot be read right now; reload the page to try again.", "error");
      });
  }

  follow();
})();
