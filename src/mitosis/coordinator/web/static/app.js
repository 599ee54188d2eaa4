/* Small page behaviour: "12 s ago" ages for <time data-age>, and confirmation of destructive
 * forms (data-confirm). Everything works without it; it only adds convenience. */
(function () {
  "use strict";

  function ago(seconds) {
    var future = seconds < 0;
    var s = Math.abs(Math.round(seconds));
    var text;
    if (s < 5) return "just now";
    if (s < 60) text = s + " s";
    else if (s < 3600) text = Math.floor(s / 60) + " min";
    else if (s < 86400) text = Math.floor(s / 3600) + " h";
    else text = Math.floor(s / 86400) + " d";
    return future ? "in " + text : text + " ago";
  }

  function renderAges(root) {
    var now = Date.now();
    (root || document).querySelectorAll("time[data-age]").forEach(function (el) {
      var when = Date.parse(el.getAttribute("datetime"));
      if (!isNaN(when)) el.textContent = ago((now - when) / 1000);
    });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  document.addEventListener("DOMContentLoaded", function () {
    renderAges(document);
    setInterval(function () { renderAges(document); }, 1000);
  });
  document.addEventListener("mito:updated", function (event) { renderAges(event.detail); });
})();
