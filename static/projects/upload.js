/* Browser uploads on the project page: files go in parts, each with its md5, to signed PUT URLs.
 *
 * For each file: create it (page endpoint), then for each part ask for a signed URL and PUT the
 * bytes; a failed part is retried alone with a fresh URL; finally close the file. Progress and
 * errors are shown per file. `document.body.dataset.uploadState` is "uploading", "done" or
 * "failed", for tests and anyone watching.
 */
(function () {
  "use strict";

  const browser = document.getElementById("browser");
  const config = browser.dataset;
  const input = document.getElementById("upload-input");
  const panel = document.getElementById("upload-panel");
  const list = document.getElementById("upload-list");
  const summary = document.getElementById("upload-summary");
  const dismiss = document.getElementById("upload-dismiss");
  const dropzone = document.getElementById("files");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  const MAX_RETRIES = 5;
  const PARALLEL_PARTS = 3;
  const queue = [];
  let running = false;
  let failures = 0;
  const uploaded = [];

  class UploadError extends Error {
    constructor(message, retryable) {
      super(message);
      this.retryable = retryable;
    }
  }

  function humanSize(bytes) {
    const units = ["bytes", "KB", "MB", "GB", "TB"];
    let value = bytes, unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
    return unit === 0 ? `${bytes} bytes` : `${value.toFixed(1)} ${units[unit]}`;
  }

  const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const forFile = (template, id) => template.replace("FILE_ID", encodeURIComponent(id));

  async function postJSON(url, body) {
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
        body: JSON.stringify(body),
      });
    } catch (err) {
      throw new UploadError("the server could not be reached", true);
    }
    const type = response.headers.get("Content-Type") || "";
    if (response.redirected || !type.includes("json")) {
      throw new UploadError("your session has ended; log in again and retry", false);
    }
    const data = await response.json();
    if (!response.ok) {
      const message = data.error ? data.error.message : `HTTP ${response.status}`;
      throw new UploadError(message, response.status >= 500 || response.status === 429);
    }
    return data;
  }

  function put(url, bytes, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", url);
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.upload.onprogress = (event) => onProgress(event.loaded);
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) return resolve();
        let message = `HTTP ${xhr.status}`;
        try { message = JSON.parse(xhr.responseText).error.message; } catch (err) { /* not JSON */ }
        reject(new UploadError(message, true));
      };
      xhr.onerror = () => reject(new UploadError("the connection failed", true));
      xhr.ontimeout = () => reject(new UploadError("the upload timed out", true));
      xhr.send(bytes);
    });
  }

  class Item {
    constructor(file) {
      this.file = file;
      this.id = null;
      this.failed = false;
      this.el = document.createElement("li");
      this.el.className = "upload-item";
      this.el.dataset.name = file.name;
      this.el.innerHTML =
        '<div class="upload-line"><span class="upload-name"></span><span class="upload-status muted"></span></div>' +
        '<div class="progress"><div class="bar"></div></div><div class="upload-error"></div>';
      this.el.querySelector(".upload-name").textContent = file.name;
      this.status("Waiting");
      list.append(this.el);
    }

    status(text, state) {
      this.el.querySelector(".upload-status").textContent = text;
      if (state) this.el.dataset.state = state;
    }

    progress(sent) {
      const total = this.file.size;
      const percent = total ? Math.min(100, Math.floor((sent / total) * 100)) : 100;
      this.el.querySelector(".bar").style.width = `${percent}%`;
      this.status(`${humanSize(sent)} of ${humanSize(total)} · ${percent}%`, "uploading");
    }

    note(text) {
      this.el.querySelector(".upload-error").textContent = text;
    }
  }

  async function uploadPart(item, blob, index, onProgress) {
    const bytes = new Uint8Array(await blob.arrayBuffer());
    const md5 = window.MD5.hex(bytes);
    for (let attempt = 0; ; attempt++) {
      try {
        const signed = await postJSON(forFile(config.partUrl, item.id), { index, size: bytes.length, md5 });
        await put(signed.url, bytes, onProgress);
        onProgress(bytes.length);
        if (attempt) item.note("");
        return;
      } catch (err) {
        onProgress(0);
        if (attempt >= MAX_RETRIES) throw new UploadError(`part ${index} failed ${attempt + 1} times: ${err.message}`, false);
        if (!err.retryable || item.failed) throw err;
        item.note(`Part ${index} failed (${err.message}); retry ${attempt + 1} of ${MAX_RETRIES}…`);
        await wait(Math.min(8000, 500 * 2 ** attempt));
      }
    }
  }

  async function uploadFile(item) {
    const file = item.file;
    item.status("Starting", "uploading");
    const created = await postJSON(config.uploadUrl, { name: file.name, folder: config.folder, media: file.type || "" });
    item.id = created.id;
    // Parts of 16 MiB, larger only when the file would otherwise need more parts than allowed.
    const partSize = Math.max(Number(config.partSize), Math.ceil(file.size / Number(config.maxParts)));
    if (partSize > Number(config.maxPartSize)) throw new UploadError("the file is too large", false);
    const count = Math.max(1, Math.ceil(file.size / partSize));
    const sent = new Array(count).fill(0);
    let next = 0;
    const worker = async () => {
      while (next < count && !item.failed) {
        const index = next++;
        const blob = file.slice(index * partSize, Math.min(file.size, (index + 1) * partSize));
        await uploadPart(item, blob, index + 1, (loaded) => {
          sent[index] = loaded;
          item.progress(sent.reduce((a, b) => a + b, 0));
        });
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(PARALLEL_PARTS, count) }, worker));
    } catch (err) {
      item.failed = true;
      throw err;
    }
    item.status("Checking", "closing");
    await postJSON(forFile(config.closeUrl, item.id), {});
    item.progress(file.size);
    item.status(`${humanSize(file.size)} · uploaded`, "done");
  }

  function setState(state) {
    document.body.dataset.uploadState = state;
  }

  async function drain() {
    if (running) return;
    running = true;
    setState("uploading");
    dismiss.hidden = true;
    while (queue.length) {
      const item = queue.shift();
      summary.textContent = `Uploading ${item.file.name}`;
      try {
        await uploadFile(item);
        uploaded.push(item.id);
      } catch (err) {
        failures++;
        item.failed = true;
        item.status("Failed", "failed");
        item.note(err.message.charAt(0).toUpperCase() + err.message.slice(1));
      }
    }
    running = false;
    if (failures) {
      summary.textContent = `${failures} upload${failures > 1 ? "s" : ""} failed` +
        (uploaded.length ? `; ${uploaded.length} done (refresh to see them)` : "");
      dismiss.hidden = false;
      setState("failed");
      return;
    }
    summary.textContent = `Uploaded ${uploaded.length} file${uploaded.length > 1 ? "s" : ""}`;
    setState("done");
    sessionStorage.setItem("dxweb.uploaded", JSON.stringify(uploaded));
    window.location.reload();
  }

  function start(files) {
    if (!files.length) return;
    panel.hidden = false;
    for (const file of files) queue.push(new Item(file));
    drain();
  }

  input.addEventListener("change", () => {
    start([...input.files]);
    input.value = "";
  });

  dismiss.addEventListener("click", () => {
    list.replaceChildren();
    panel.hidden = true;
    failures = 0;
    if (uploaded.length) {
      sessionStorage.setItem("dxweb.uploaded", JSON.stringify(uploaded));
      window.location.reload();
    }
  });

  const hasFiles = (event) => event.dataTransfer && [...event.dataTransfer.types].includes("Files");
  dropzone.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    dropzone.classList.add("dragging");
  });
  dropzone.addEventListener("dragleave", (event) => {
    if (!dropzone.contains(event.relatedTarget)) dropzone.classList.remove("dragging");
  });
  dropzone.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    dropzone.classList.remove("dragging");
    start([...event.dataTransfer.files]);
  });

  window.addEventListener("beforeunload", (event) => {
    if (running) event.preventDefault();
  });
})();
