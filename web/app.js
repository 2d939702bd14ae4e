// Upload page: prepare-upload, PUT each file to its presigned URL, confirm, then poll the verdict.
// Plain JS, no build step. File names are user data: they only ever go through textContent.
"use strict";

(() => {
  const TYPES = { jpg: "image/jpeg", jpeg: "image/jpeg", jpe: "image/jpeg", png: "image/png", webp: "image/webp", gif: "image/gif" };
  const ACCEPTED = new Set(Object.values(TYPES)); // the API's mime_type rule
  const MAX_SIZE = 10 * 1024 * 1024; // the API's file_size rule
  const PARALLEL = 4; // PUTs at once
  const BATCH = 100; // files per prepare-upload (the API takes up to 1000)
  const PUT_ATTEMPTS = 3; // a failed PUT is tried again twice, each time with a fresh URL
  const POLL_PARALLEL = 4;
  const VERDICT_TIMEOUT_MS = 60000;
  const params = new URLSearchParams(location.search);
  const GRID_PAGE = Number(params.get("page_size")) || 24; // thumbnails per page of the grid

  const $ = (id) => document.getElementById(id);
  const items = []; // {file, path, mime, state, row, sent, imageId, url, since}
  const watching = new Set();
  let running = false;
  let polling = false;
  let gridCursor = null;
  let gridGeneration = 0;

  class Unreachable extends Error {}

  // --- settings --------------------------------------------------------------------------------

  function apiBase() {
    const typed = $("api").value.trim().replace(/\/+$/, "");
    return typed || (location.protocol.startsWith("http") ? location.origin : "");
  }

  function datasetId() {
    const value = $("dataset").value.trim();
    return /^[1-9]\d*$/.test(value) ? value : null;
  }

  function remember() {
    localStorage.setItem("uploads.dataset", $("dataset").value.trim());
    localStorage.setItem("uploads.api", $("api").value.trim());
  }

  // --- messages --------------------------------------------------------------------------------

  function showMessage(text) {
    $("message").textContent = text;
    $("message").hidden = false;
  }

  function clearMessage() {
    $("message").hidden = true;
    $("message").textContent = "";
  }

  // --- API -------------------------------------------------------------------------------------

  async function api(path, options = {}) {
    const base = apiBase();
    if (!base) throw new Error("Set the API URL: this page is not served over HTTP.");
    let response;
    try {
      const headers = options.body ? { "Content-Type": "application/json" } : {};
      response = await fetch(base + path, { ...options, headers });
    } catch {
      throw new Unreachable(
        `The API at ${base} is unreachable: network error, or its CORS rules do not allow this page's origin (${location.origin}).`,
      );
    }
    const text = await response.text();
    let body = text;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      /* not JSON: keep the text */
    }
    if (!response.ok) throw new Error(`The API answered ${response.status}: ${describeError(body)}`);
    return { body, headers: response.headers };
  }

  function describeError(body) {
    if (body && Array.isArray(body.detail)) {
      return body.detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
    }
    if (body && typeof body.detail === "string") return body.detail;
    if (body && body.message) return body.message;
    return String(body ?? "").slice(0, 200) || "no details";
  }

  // --- the file list ---------------------------------------------------------------------------

  function mimeOf(file) {
    if (file.type) return file.type;
    return TYPES[file.name.split(".").pop().toLowerCase()] || "";
  }

  function refusal(file, mime) {
    if (!ACCEPTED.has(mime)) return `not accepted: ${mime || "unknown type"} (JPEG, PNG, WebP or GIF only)`;
    if (file.size === 0) return "not accepted: empty file";
    if (file.size > MAX_SIZE) return `not accepted: over 10 MiB (${file.size} bytes)`;
    if (file.name.length > 255) return "not accepted: name over 255 characters";
    return null;
  }

  function formatSize(bytes) {
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  }

  function cell(row, className) {
    const td = row.insertCell();
    if (className) td.className = className;
    return td;
  }

  function addFiles(found) {
    for (const [file, path] of found) {
      const mime = mimeOf(file);
      const row = document.createElement("tr");
      const item = { file, path: path || file.name, mime, state: "ready", row, sent: 0 };
      const name = cell(row, "name");
      item.preview = name.appendChild(document.createElement("img"));
      item.preview.hidden = true;
      item.preview.alt = "";
      name.appendChild(document.createTextNode(item.path));
      cell(row).textContent = formatSize(file.size);
      item.progress = cell(row).appendChild(document.createElement("progress"));
      item.progress.max = file.size || 1;
      item.progress.value = 0;
      item.status = cell(row, "status");
      item.action = cell(row);
      $("rows").appendChild(row);
      items.push(item);
      const refused = refusal(file, mime);
      setState(item, refused ? "refused" : "ready", refused || "ready");
    }
    $("queue").hidden = items.length === 0;
    update();
  }

  function setState(item, state, text) {
    item.state = state;
    item.row.className = state;
    item.row.dataset.state = state;
    item.status.textContent = text;
    item.action.replaceChildren();
    if (state === "failed") {
      const retry = document.createElement("button");
      retry.type = "button";
      retry.textContent = "Retry";
      retry.addEventListener("click", () => {
        setState(item, "ready", "ready");
        start();
      });
      item.action.appendChild(retry);
    }
    update();
  }

  function update() {
    const count = (state) => items.filter((i) => i.state === state).length;
    const wanted = items.filter((i) => i.state !== "refused");
    const total = wanted.reduce((sum, i) => sum + i.file.size, 0);
    const sent = wanted.reduce((sum, i) => sum + Math.min(i.sent, i.file.size), 0);
    $("overall").max = total || 1;
    $("overall").value = sent;
    const ready = count("ready");
    const parts = [`${formatSize(sent)} of ${formatSize(total)} sent`, `${count("uploaded")} uploaded`];
    const busy = count("uploading") + count("processing");
    if (busy) parts.push(`${busy} in progress`);
    if (ready) parts.push(`${ready} waiting`);
    for (const [state, label] of [["error", "rejected by the server"], ["failed", "failed"], ["refused", "not accepted"]]) {
      if (count(state)) parts.push(`${count(state)} ${label}`);
    }
    $("summary").textContent = parts.join(" · ");
    $("start").textContent = ready ? `Upload ${ready} file${ready === 1 ? "" : "s"}` : "Upload";
    $("start").disabled = running || ready === 0;
    $("clear").disabled = running || watching.size > 0;
  }

  // --- uploading -------------------------------------------------------------------------------

  async function start() {
    if (running) return;
    const dataset = datasetId();
    if (!dataset) {
      showMessage("Choose a dataset id (a positive whole number) first.");
      return;
    }
    remember();
    clearMessage();
    running = true;
    update();
    try {
      let todo;
      while ((todo = items.filter((i) => i.state === "ready")).length) {
        const chunk = todo.slice(0, BATCH);
        chunk.forEach((i) => setState(i, "uploading", "preparing…"));
        try {
          await prepare(dataset, chunk);
        } catch (error) {
          chunk.forEach((i) => setState(i, "ready", "ready"));
          throw error;
        }
        await pool(chunk, PARALLEL, (item) => put(dataset, item));
        const sent = chunk.filter((i) => i.state === "processing").map((i) => i.imageId);
        if (sent.length) {
          await api(`/datasets/${dataset}/images/confirm-upload`, {
            method: "POST",
            body: JSON.stringify({ image_ids: sent }),
          });
        }
      }
    } catch (error) {
      showMessage(error.message);
    } finally {
      running = false;
      update();
      settled();
    }
  }

  async function prepare(dataset, chunk) {
    const files = chunk.map((i) => ({ filename: i.file.name, file_size: i.file.size, mime_type: i.mime }));
    const { body } = await api(`/datasets/${dataset}/images/prepare-upload`, {
      method: "POST",
      body: JSON.stringify({ files }),
    });
    chunk.forEach((item, n) => {
      const upload = body.uploads[n];
      if (item.imageId) {
        // A retry: the record of the abandoned URL goes (best effort; cleanup would remove it later).
        api(`/images/${item.imageId}`, { method: "DELETE" }).catch(() => {});
      }
      item.imageId = upload.image_id;
      item.url = upload.upload_url;
    });
  }

  async function pool(list, size, work) {
    let next = 0;
    const worker = async () => {
      while (next < list.length) await work(list[next++]);
    };
    await Promise.all(Array.from({ length: Math.min(size, list.length) }, worker));
  }

  async function put(dataset, item) {
    for (let attempt = 1; ; attempt++) {
      try {
        setState(item, "uploading", attempt === 1 ? "uploading…" : `uploading (try ${attempt})…`);
        await send(item);
        break;
      } catch (error) {
        item.sent = 0;
        item.progress.value = 0;
        if (attempt >= PUT_ATTEMPTS) {
          if (error instanceof Unreachable) showMessage(error.message);
          setState(item, "failed", error.message);
          return;
        }
        setState(item, "uploading", `${error.message}; trying again with a fresh URL…`);
        await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
        try {
          await prepare(dataset, [item]);
        } catch (prepareError) {
          setState(item, "failed", prepareError.message);
          return;
        }
      }
    }
    setState(item, "processing", "sent, checking the image…");
    item.since = Date.now();
    watching.add(item);
    poll();
  }

  function send(item) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", item.url);
      xhr.setRequestHeader("Content-Type", item.mime); // signed into the URL, as is the length
      xhr.upload.onprogress = (event) => {
        item.sent = event.loaded;
        item.progress.value = event.loaded;
        update();
      };
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) {
          item.sent = item.file.size;
          item.progress.value = item.file.size;
          resolve();
        } else {
          const code = /<Code>([^<]*)<\/Code>/.exec(xhr.responseText || "");
          reject(new Error(`storage refused the upload (${xhr.status}${code ? ` ${code[1]}` : ""})`));
        }
      };
      const origin = new URL(item.url).origin;
      xhr.onerror = () =>
        reject(new Unreachable(`Storage (S3) at ${origin} is unreachable: network error, or its CORS rules refuse this page's origin.`));
      xhr.ontimeout = () => reject(new Unreachable(`Storage (S3) at ${origin} timed out.`));
      xhr.send(item.file);
    });
  }

  // --- verdicts: the S3 trigger judges each object about a second after its PUT ------------------

  async function poll() {
    if (polling) return;
    polling = true;
    try {
      while (watching.size) {
        await new Promise((resolve) => setTimeout(resolve, 700));
        await pool([...watching], POLL_PARALLEL, check);
      }
    } finally {
      polling = false;
      update();
      settled();
    }
  }

  async function check(item) {
    let image;
    try {
      ({ body: image } = await api(`/images/${item.imageId}`));
    } catch (error) {
      if (error instanceof Unreachable) showMessage(error.message);
      else {
        watching.delete(item);
        setState(item, "failed", error.message);
      }
      return;
    }
    // Only the S3 trigger's verdict makes an image `uploaded` (with its size) or `error`.
    if (image.status === "error") {
      watching.delete(item);
      const reason = image.error_reason || {};
      setState(item, "error", `error: ${reason.message || reason.code || "rejected"}${reason.code ? ` (${reason.code})` : ""}`);
    } else if (image.status === "uploaded" && image.width) {
      watching.delete(item);
      setState(item, "uploaded", `uploaded · ${image.width}×${image.height}`);
      showPreview(item);
    } else if (Date.now() - item.since > VERDICT_TIMEOUT_MS) {
      watching.delete(item);
      setState(item, "failed", `${image.status}, not verified yet`);
    }
  }

  function showPreview(item) {
    const url = URL.createObjectURL(item.file);
    item.preview.addEventListener("load", () => URL.revokeObjectURL(url), { once: true });
    item.preview.addEventListener("error", () => URL.revokeObjectURL(url), { once: true });
    item.preview.src = url;
    item.preview.hidden = false;
  }

  function settled() {
    if (!running && !watching.size && items.some((i) => i.state === "uploaded")) loadGrid(true);
  }

  // --- the dataset's thumbnails ----------------------------------------------------------------

  async function loadGrid(reset) {
    const dataset = datasetId();
    if (!dataset) return;
    const generation = reset ? ++gridGeneration : gridGeneration;
    const query = new URLSearchParams({ limit: GRID_PAGE, status: "uploaded" });
    if (!reset && gridCursor) query.set("cursor", gridCursor);
    $("more").disabled = true;
    try {
      const { body, headers } = await api(`/datasets/${dataset}/images/with-urls?${query}`);
      if (generation !== gridGeneration) return; // another dataset was asked for meanwhile
      if (reset) $("grid").replaceChildren();
      $("grid-dataset").textContent = dataset;
      for (const image of body) $("grid").appendChild(card(image));
      gridCursor = headers.get("X-Next-Cursor");
      $("more").hidden = !gridCursor;
      if (reset && !body.length) {
        const empty = document.createElement("li");
        empty.className = "meta";
        empty.textContent = "No uploaded image yet.";
        $("grid").appendChild(empty);
      }
    } catch (error) {
      showMessage(error.message);
    } finally {
      $("more").disabled = false;
    }
  }

  function card(image) {
    const li = document.createElement("li");
    li.dataset.imageId = image.id;
    const img = li.appendChild(document.createElement("img"));
    img.loading = "lazy";
    img.alt = image.filename;
    img.src = image.thumbnail_url || image.download_url || "";
    const caption = li.appendChild(document.createElement("div"));
    caption.className = "caption";
    caption.textContent = image.filename;
    const meta = li.appendChild(document.createElement("div"));
    meta.className = "meta";
    meta.textContent = `#${image.id} · ${image.width ?? "?"}×${image.height ?? "?"} · ${formatSize(image.file_size)}`;
    return li;
  }

  // --- picking files: inputs, and drag and drop of files and folders ---------------------------

  async function walk(entry, found) {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      found.push([file, entry.fullPath.replace(/^\//, "")]);
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        // readEntries gives a directory's entries a batch at a time, then an empty batch.
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        for (const child of batch) await walk(child, found);
      }
    }
  }

  function wire() {
    $("dataset").value = params.get("dataset") || localStorage.getItem("uploads.dataset") || "";
    $("api").value = params.get("api") || localStorage.getItem("uploads.api") || "";

    for (const input of [$("files"), $("folder")]) {
      input.addEventListener("change", () => {
        addFiles([...input.files].map((f) => [f, f.webkitRelativePath || f.name]));
        input.value = "";
      });
    }
    const drop = $("drop");
    // A drop outside the zone must not navigate away from the page.
    for (const type of ["dragover", "drop"]) window.addEventListener(type, (e) => e.preventDefault());
    drop.addEventListener("dragover", () => drop.classList.add("over"));
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", async (event) => {
      drop.classList.remove("over");
      // Entries must be taken during the event: the DataTransfer is emptied after it.
      const entries = [...event.dataTransfer.items]
        .filter((i) => i.kind === "file")
        .map((i) => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null));
      const plain = [...event.dataTransfer.files];
      if (!entries.length || entries.some((e) => !e)) {
        addFiles(plain.map((f) => [f, f.name]));
        return;
      }
      const found = [];
      try {
        for (const entry of entries) await walk(entry, found);
      } catch (error) {
        showMessage(`Could not read the dropped folder: ${error.message || error}`);
      }
      addFiles(found);
    });

    $("start").addEventListener("click", start);
    $("clear").addEventListener("click", () => {
      items.splice(0).forEach((i) => i.row.remove());
      $("queue").hidden = true;
      update();
    });
    $("settings").addEventListener("submit", (event) => {
      event.preventDefault();
      remember();
      clearMessage();
      loadGrid(true);
    });
    $("more").addEventListener("click", () => loadGrid(false));
    if (datasetId()) loadGrid(true);
  }

  wire();
})();
