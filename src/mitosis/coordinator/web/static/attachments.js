/* Attachment upload with a progress bar: ask the dashboard for a signed upload URL (the same
 * service as POST /groups/{group}/attachments, so the role and quota checks are the server's),
 * then PUT the file straight to the blob store with XMLHttpRequest, whose upload.onprogress
 * drives the <progress> element. The browser sends the file's Content-Length itself. */
(function () {
  "use strict";

  var form = document.querySelector("form[data-upload]");
  if (!form) return;
  var fileInput = form.querySelector("input[type=file]");
  var keyInput = form.querySelector("input[name=key]");
  var bar = form.querySelector("progress");
  var status = form.querySelector("#u-status");
  var button = form.querySelector("button[type=submit]");
  var prefix = form.getAttribute("data-prefix") || "";

  function say(text, isError) {
    status.textContent = text;
    status.classList.toggle("bad", !!isError);
  }

  fileInput.addEventListener("change", function () {
    var file = fileInput.files && fileInput.files[0];
    if (!file) return;
    // Suggest <prefix><file name> unless a full key was typed already.
    if (!keyInput.value || keyInput.value === prefix || keyInput.value.slice(-1) === "/") {
      keyInput.value = (keyInput.value || prefix) + file.name;
    }
  });

  function uploadUrl(file, key) {
    var body = new URLSearchParams();
    body.set("csrf_token", form.querySelector("input[name=csrf_token]").value);
    body.set("key", key);
    body.set("size", String(file.size));
    return fetch(form.getAttribute("action"), {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      body: body,
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok || !data.url) throw new Error(data.msg || "the upload was refused (HTTP " + response.status + ")");
        return data;
      });
    });
  }

  function put(url, file) {
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest();
      xhr.open("PUT", url);
      xhr.upload.onprogress = function (event) {
        if (!event.lengthComputable) return;
        bar.max = event.total;
        bar.value = event.loaded;
        bar.setAttribute("data-progress-events", String(Number(bar.getAttribute("data-progress-events") || 0) + 1));
        say("Uploading… " + Math.floor((100 * event.loaded) / Math.max(event.total, 1)) + " %");
      };
      xhr.onload = function () {
        if (xhr.status >= 200 && xhr.status < 300) resolve();
        else reject(new Error("the blob store answered HTTP " + xhr.status));
      };
      xhr.onerror = function () { reject(new Error("the upload failed (network error)")); };
      xhr.onabort = function () { reject(new Error("the upload was aborted")); };
      xhr.send(file);
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var file = fileInput.files && fileInput.files[0];
    var key = keyInput.value.trim();
    if (!file) { say("Choose a file first.", true); return; }
    if (!key || key.slice(-1) === "/") { say("Give the key a file name, e.g. " + (key || "") + file.name, true); return; }
    button.disabled = true;
    bar.hidden = false;
    bar.max = Math.max(file.size, 1);
    bar.value = 0;
    form.setAttribute("data-upload-state", "uploading");
    say("Requesting an upload URL…");
    uploadUrl(file, key)
      .then(function (data) { return put(data.url, file); })
      .then(function () {
        bar.value = bar.max;
        form.setAttribute("data-upload-state", "done");
        say("Uploaded " + key + ".");
        var slash = key.lastIndexOf("/");
        var folder = slash >= 0 ? key.slice(0, slash + 1) : "";
        var target = form.getAttribute("data-list-url") + (folder ? "?prefix=" + encodeURIComponent(folder) : "");
        setTimeout(function () { window.location.assign(target); }, 800);
      })
      .catch(function (error) {
        form.setAttribute("data-upload-state", "failed");
        say(error.message, true);
        button.disabled = false;
      });
  });
})();
