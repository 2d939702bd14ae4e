// Upload page: prepare-upload, PUT each file to its presigned URL, confirm, then poll the verdict.
// Plain JS, no build step. File names are user data: they only ever go through textContent.
//
// The page talks to one API only, the one it was deployed with: config.json beside the page says
// {"api": "<base URL>"} when the API is elsewhere (absent: this page's own origin), and
// {"oidc": {"issuer", "client_id"}} for "Sign in" (authorization code + PKCE). Nothing in the page's
// URL can change either. The token lives in sessionStorage (this tab only, gone when it closes) and
// goes as `Authorization: Bearer` to the API only, never to S3 (presigned URLs carry their own rights).
"use strict";

(() => {
  // What the API accepts (types, sizes, batch, and how each type's first bytes look) is read from its
  // GET /limits once per page load, never copied here. A file is judged by its bytes, as the S3 trigger
  // judges it (a camera's .mpo, a .jfif or a .JPG is a JPEG; HTML named .png is not an image).
  // Names the file picker also offers for a type (systems that do not know .heic by its MIME type).
  const EXTENSIONS = { "image/jpeg": [".mpo"], "image/heic": [".heic"], "image/heif": [".heif"], "image/avif": [".avif"] };
  const PARALLEL = 4; // PUTs at once
  const BATCH = 100; // files per prepare-upload, at most the API's max_batch
  const PUT_ATTEMPTS = 3; // a failed PUT is tried again twice, each time with a fresh URL
  const POLL_PARALLEL = 4;
  const VERDICT_TIMEOUT_MS = 60000;
  // sessionStorage keys (this tab only). localStorage is never written: it outlives the session and
  // is shared by every tab of the origin.
  const TOKEN = "uploads.token";
  const USER = "uploads.user"; // who signed in, for display only
  const SIGN_IN = "uploads.sign-in"; // {state, verifier, redirect, search} while the issuer is asked
  const DATASET = "uploads.dataset";
  const OLD_LOCAL_KEYS = ["uploads.api", "uploads.dataset"]; // what earlier versions kept in localStorage
  const SIGN_IN_PARAMS = ["code", "state", "error", "error_description", "error_uri", "iss", "session_state"];

  const $ = (id) => document.getElementById(id);
  const items = []; // {file, path, mime, state, row, sent, imageId, url, since}
  const watching = new Set();
  let params = new URLSearchParams(location.search);
  let gridPage = 24; // thumbnails per page of the grid (?page_size=)
  let config = null; // {api, oidc: {issuer, client_id, scope} | null} once config.json is read
  let limits = Promise.resolve(null); // the API's upload rules (GET /limits), or null if unreadable
  let token = "";
  let datasets = null; // [{dataset_id, role}] of the caller, or null: any dataset id (open API, or no token)
  let running = false;
  let polling = false;
  let gridCursor = null;
  let gridGeneration = 0;

  class Unreachable extends Error {}

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // --- storage ---------------------------------------------------------------------------------

  const session = {
    get(key) {
      try {
        return sessionStorage.getItem(key) || "";
      } catch {
        return "";
      }
    },
    set(key, value) {
      try {
        if (value) sessionStorage.setItem(key, value);
        else sessionStorage.removeItem(key);
      } catch {
        /* storage disabled: the setting lasts as long as the page */
      }
    },
  };

  function forgetOldSettings() {
    // Earlier versions kept the API URL (settable by ?api=) and the dataset in localStorage.
    try {
      const dataset = localStorage.getItem("uploads.dataset");
      if (dataset && !session.get(DATASET)) session.set(DATASET, dataset);
      for (const key of OLD_LOCAL_KEYS) if (localStorage.getItem(key) !== null) localStorage.removeItem(key);
    } catch {
      /* storage disabled: nothing was kept either */
    }
  }

  // --- configuration: config.json beside the page ------------------------------------------------

  const LOOPBACK = new Set(["localhost", "127.0.0.1", "[::1]"]);

  // An absolute https: URL (http: only on this machine): a base URL without trailing slashes, or
  // (exact) an endpoint of the issuer's, kept as given, query included.
  function endpoint(value, name, { exact = false } = {}) {
    let url;
    try {
      url = new URL(String(value));
    } catch {
      throw new Error(`${name} is not an absolute URL (${String(value).slice(0, 100)})`);
    }
    if (!(url.protocol === "https:" || (url.protocol === "http:" && LOOPBACK.has(url.hostname)))) {
      throw new Error(`${name} must be an https: URL (http: only for localhost), not ${url.origin}`);
    }
    if (url.username || url.password || url.hash || (url.search && !exact)) {
      throw new Error(`${name} must be a plain URL, without credentials, query or fragment`);
    }
    return exact ? url.href : url.origin + url.pathname.replace(/\/+$/, "");
  }

  function parseConfig(raw) {
    if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw new Error("config.json is not a JSON object");
    const api = raw.api ? endpoint(raw.api, "config.json: api") : location.origin;
    let oidc = null;
    if (raw.oidc) {
      const { issuer, client_id: clientId, scope } = raw.oidc;
      if (typeof clientId !== "string" || !clientId) throw new Error("config.json: oidc.client_id is missing");
      oidc = { issuer: endpoint(issuer, "config.json: oidc.issuer"), client_id: clientId, scope: typeof scope === "string" && scope ? scope : "openid" };
    }
    return { api, oidc };
  }

  async function loadConfig() {
    if (!location.protocol.startsWith("http")) {
      throw new Error("Serve this page over HTTP(S), beside its config.json: opened as a file it has no API.");
    }
    let response;
    try {
      response = await fetch("config.json", { cache: "no-store", redirect: "error" });
    } catch {
      throw new Error("This page's config.json could not be fetched (network error): reload the page.");
    }
    if (response.status === 404) return parseConfig({}); // no config: the API is this page's origin
    if (!response.ok) throw new Error(`This page's config.json answered ${response.status}: reload the page.`);
    let raw;
    try {
      raw = await response.json();
    } catch {
      throw new Error("This page's config.json is not valid JSON.");
    }
    return parseConfig(raw);
  }

  // --- the API's upload rules: GET /limits (public: no token) -----------------------------------

  async function loadLimits() {
    let response;
    try {
      response = await fetch(`${config.api}/limits`, { redirect: "error" });
    } catch {
      throw new Unreachable(
        `The API at ${config.api} is unreachable: network error, or its CORS rules do not allow this page's origin (${location.origin}).`,
      );
    }
    if (!response.ok) throw new Error(`The API's upload rules (GET /limits) could not be read: it answered ${response.status}.`);
    const body = await response.json().catch(() => null);
    const count = (name) => (body && Number.isSafeInteger(body[name]) && body[name] >= 0 ? body[name] : null);
    const strings = (list) => Array.isArray(list) && list.every((t) => typeof t === "string");
    const hex = (text) => typeof text === "string" && /^([0-9a-f]{2})+$/.test(text);
    const signature = (s) =>
      s && typeof s.mime_type === "string" && strings(s.ftyp_brands) && typeof s.major_brand_only === "boolean" &&
      Array.isArray(s.magic) && s.magic.every((m) => m && Number.isSafeInteger(m.offset) && m.offset >= 0 && hex(m.hex));
    const rules = {
      mime_types: body && strings(body.mime_types) ? body.mime_types : null,
      signatures: body && Array.isArray(body.signatures) && body.signatures.every(signature) ? body.signatures : null,
      sniff_bytes: count("sniff_bytes"),
      type_names: body && body.type_names && typeof body.type_names === "object" ? body.type_names : null,
      min_file_size: count("min_file_size"),
      max_file_size: count("max_file_size"),
      max_filename_length: count("max_filename_length"),
      max_batch: count("max_batch"),
    };
    if (Object.values(rules).includes(null) || !rules.max_batch) {
      throw new Error("The API's upload rules (GET /limits) are not what this page understands.");
    }
    return rules;
  }

  const typeName = (rules, mime) => (typeof rules.type_names[mime] === "string" ? rules.type_names[mime] : mime);
  const typeNames = (rules) => {
    const names = rules.mime_types.map((t) => typeName(rules, t));
    return names.length > 1 ? `${names.slice(0, -1).join(", ")} or ${names[names.length - 1]}` : names.join("");
  };

  function showRules(rules) {
    // The picker filters by name: a camera's .mpo is a JPEG too (the page then judges every file's bytes).
    $("files").accept = rules.mime_types.flatMap((t) => [t, ...(EXTENSIONS[t] || [])]).join(",");
    $("rules").textContent = `${typeNames(rules)}, ${formatLimit(rules.max_file_size)} at most each (judged by their content, not their names).`;
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
    if (!config) throw new Error("The page is not configured yet.");
    const sent = token;
    const headers = options.body ? { "Content-Type": "application/json" } : {};
    if (sent) headers.Authorization = `Bearer ${sent}`; // the API only: S3 URLs are presigned
    let response;
    try {
      response = await fetch(config.api + path, { ...options, headers, redirect: "error" });
    } catch {
      throw new Unreachable(
        `The API at ${config.api} is unreachable: network error, or its CORS rules do not allow this page's origin (${location.origin}).`,
      );
    }
    const text = await response.text();
    let body = text;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      /* not JSON: keep the text */
    }
    if (response.status === 401) throw refused(sent);
    if (!response.ok) throw new ApiError(response.status, `The API answered ${response.status}: ${describeError(body)}${hint(response.status, path)}`);
    return { body, headers: response.headers, status: response.status };
  }

  function describeError(body) {
    if (body && Array.isArray(body.detail)) {
      return body.detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
    }
    if (body && typeof body.detail === "string") return body.detail;
    if (body && body.message) return body.message;
    return String(body ?? "").slice(0, 200) || "no details";
  }

  function hint(status, path) {
    if (!token) return "";
    if (status === 404 && path.startsWith("/datasets/")) return " (it does not exist, or you are not one of its members)";
    if (status === 403) return " (ask one of the dataset's owners for that role)";
    return "";
  }

  // A 401: no token, or the one sent was refused (expired, revoked, another issuer's): signed out.
  function refused(sent) {
    const oidc = Boolean(config.oidc);
    if (!sent) {
      return new ApiError(401, oidc
        ? "The API needs you to sign in (401 Unauthorized): click “Sign in”."
        : "The API needs a token (401 Unauthorized): paste one in the Token field.");
    }
    if (sent === token) signOut({ everything: false });
    return new ApiError(401, oidc
      ? "The API refused your sign-in (401 Unauthorized): it has expired. You are signed out: sign in again."
      : "The API refused the token (401 Unauthorized): it has expired or is not valid. It was cleared: paste a new one.");
  }

  // --- signing in: authorization code flow with PKCE (S256), tokens in sessionStorage -----------

  function base64url(bytes) {
    let text = "";
    for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  const randomString = (bytes) => base64url(crypto.getRandomValues(new Uint8Array(bytes)));

  // The issuer's endpoints, from its discovery document (whose issuer must be the configured one).
  async function discover() {
    const { issuer } = config.oidc;
    let response;
    try {
      response = await fetch(`${issuer}/.well-known/openid-configuration`, { cache: "no-store", redirect: "error" });
    } catch {
      throw new Unreachable(`The sign-in service at ${issuer} is unreachable: network error, or its CORS rules do not allow this page's origin.`);
    }
    if (!response.ok) throw new Error(`The sign-in service at ${issuer} answered ${response.status} for its discovery document.`);
    const doc = await response.json().catch(() => ({}));
    if (typeof doc.issuer !== "string" || doc.issuer.replace(/\/+$/, "") !== issuer) {
      throw new Error(`The discovery document of ${issuer} names another issuer (${String(doc.issuer).slice(0, 100)}): sign-in refused.`);
    }
    return {
      authorize: endpoint(doc.authorization_endpoint, "The issuer's authorization_endpoint", { exact: true }),
      token: endpoint(doc.token_endpoint, "The issuer's token_endpoint", { exact: true }),
    };
  }

  const redirectUri = () => location.origin + location.pathname; // the page itself, without query

  async function signIn() {
    clearMessage();
    if (!window.crypto || !crypto.subtle) {
      showMessage("Signing in needs a secure page (HTTPS, or http://localhost).");
      return;
    }
    $("sign-in").disabled = true;
    try {
      const endpoints = await discover();
      const verifier = randomString(32); // 43 characters
      const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
      const state = randomString(16);
      const search = withoutSignInParams(location.search);
      session.set(SIGN_IN, JSON.stringify({ state, verifier, redirect: redirectUri(), search }));
      const url = new URL(endpoints.authorize);
      for (const [name, value] of Object.entries({
        response_type: "code",
        client_id: config.oidc.client_id,
        redirect_uri: redirectUri(),
        scope: config.oidc.scope,
        state,
        code_challenge: challenge,
        code_challenge_method: "S256",
      })) url.searchParams.set(name, value);
      location.assign(url.href);
    } catch (error) {
      $("sign-in").disabled = false;
      showMessage(error.message);
    }
  }

  function withoutSignInParams(search) {
    const query = new URLSearchParams(search);
    SIGN_IN_PARAMS.forEach((name) => query.delete(name));
    const text = query.toString();
    return text ? `?${text}` : "";
  }

  // Back from the issuer with ?code=&state= (or ?error=): check the state, trade the code for tokens.
  async function completeSignIn() {
    const answer = new URLSearchParams(location.search);
    if (!answer.has("code") && !answer.has("error")) return;
    let pending = null;
    try {
      pending = JSON.parse(session.get(SIGN_IN) || "null");
    } catch {
      /* unreadable: as if absent */
    }
    session.set(SIGN_IN, ""); // one answer per request, whatever follows
    // The code leaves the address bar (and the history) before anything else happens.
    history.replaceState(null, "", location.pathname + (pending ? pending.search : withoutSignInParams(location.search)));
    params = new URLSearchParams(location.search);
    if (!config.oidc) return;
    if (!pending || !pending.state || answer.get("state") !== pending.state) {
      throw new Error("A sign-in answer arrived that this tab did not ask for (its state does not match): ignored. Sign in again.");
    }
    if (answer.has("iss") && answer.get("iss").replace(/\/+$/, "") !== config.oidc.issuer) {
      throw new Error("The sign-in answer comes from another issuer: ignored. Sign in again.");
    }
    if (answer.has("error")) {
      throw new Error(`Sign-in failed: ${answer.get("error_description") || answer.get("error")}`);
    }
    const endpoints = await discover();
    let response;
    try {
      response = await fetch(endpoints.token, {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({
          grant_type: "authorization_code",
          code: answer.get("code"),
          redirect_uri: pending.redirect,
          client_id: config.oidc.client_id,
          code_verifier: pending.verifier,
        }),
        cache: "no-store",
        redirect: "error",
      });
    } catch {
      throw new Unreachable(`The sign-in service's token endpoint (${new URL(endpoints.token).origin}) is unreachable, or its CORS rules do not allow this page's origin.`);
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(`Sign-in failed: the token endpoint answered ${response.status} (${body.error_description || body.error || "no details"}). Sign in again.`);
    }
    // The access token is what an API authorizes (Cognito's has the client as client_id, others as aud);
    // an issuer that gives none (pure OpenID Connect) leaves the id token, whose aud is the client.
    const chosen = body.access_token || body.id_token;
    if (typeof chosen !== "string" || !chosen) throw new Error("Sign-in failed: the token endpoint gave no token.");
    const claims = { ...claimsOf(body.access_token), ...claimsOf(body.id_token) };
    const name = claims.preferred_username || claims.email || claims["cognito:username"] || claims.username || claims.sub || "";
    setToken(chosen, `${name}`.slice(0, 100));
  }

  // A JWT's claims, for display only (the API checks the signature; the page never trusts them).
  function claimsOf(jwt) {
    try {
      const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const bytes = Uint8Array.from(atob(part.padEnd(Math.ceil(part.length / 4) * 4, "=")), (c) => c.charCodeAt(0));
      const claims = JSON.parse(new TextDecoder().decode(bytes));
      return claims && typeof claims === "object" ? claims : {};
    } catch {
      return {};
    }
  }

  function setToken(value, user = "") {
    token = value;
    session.set(TOKEN, value);
    session.set(USER, value ? user : "");
    renderAuth();
  }

  // Sign out: everything this tab kept goes ("Sign out"); a refused token only takes itself away.
  function signOut({ everything }) {
    if (everything) {
      try {
        sessionStorage.clear();
      } catch {
        /* storage disabled */
      }
    }
    setToken("");
    useNumberField();
  }

  function useTypedToken() {
    const typed = $("token").value.trim().replace(/^Bearer\s+/i, "");
    if (typed && !/^[\x21-\x7e]+$/.test(typed)) {
      showMessage("A token is one word of printable ASCII characters: check what was pasted.");
      return;
    }
    if (typed === token) return;
    clearMessage();
    setToken(typed);
    refreshDatasets(datasetId());
  }

  function renderAuth() {
    const oidc = Boolean(config && config.oidc);
    $("sign-in").hidden = !oidc || Boolean(token);
    $("sign-in").disabled = false;
    $("user").hidden = !oidc || !token;
    $("sign-out").hidden = !oidc || !token;
    $("user").textContent = token ? `Signed in${session.get(USER) ? ` as ${session.get(USER)}` : ""}` : "";
    $("token-form").hidden = !config || oidc;
    if (!oidc && $("token").value.trim().replace(/^Bearer\s+/i, "") !== token) $("token").value = token;
    $("note").hidden = !oidc || Boolean(token);
    $("note").textContent = "Sign in to see your datasets and upload.";
  }

  // --- datasets --------------------------------------------------------------------------------

  // Signed in: the caller's datasets (GET /datasets) in a list; an open API (409) or no token: any id.
  async function refreshDatasets(preferred) {
    if (!token) {
      useNumberField();
      return;
    }
    let list;
    try {
      ({ body: list } = await api("/datasets"));
    } catch (error) {
      useNumberField();
      if (error.status !== 409) showMessage(error.message); // 409: an open API, no members, any dataset
      return;
    }
    useList(Array.isArray(list) ? list : [], preferred);
  }

  function useNumberField() {
    const current = datasetId();
    datasets = null;
    if (current) $("dataset").value = current;
    $("dataset-number").hidden = false;
    $("dataset-pick").hidden = true;
    $("create").hidden = true;
  }

  function useList(list, preferred) {
    datasets = [...list].sort((a, b) => a.dataset_id - b.dataset_id);
    const select = $("datasets");
    select.replaceChildren();
    for (const { dataset_id: id, role } of datasets) {
      const option = new Option(`${id} · ${role}`, String(id));
      option.dataset.role = role;
      select.appendChild(option);
    }
    const wanted = /^[1-9]\d*$/.test(String(preferred || "")) ? String(preferred) : "";
    if (wanted && !datasets.some((d) => String(d.dataset_id) === wanted)) {
      // Asked for by the link or earlier: kept, so that the API says what it thinks of it.
      select.appendChild(new Option(`${wanted} · not in your list`, wanted));
    }
    if (!select.options.length) {
      const none = new Option("none yet: create one", "");
      none.disabled = true;
      select.appendChild(none);
    }
    select.value = wanted || (datasets.length ? String(datasets[0].dataset_id) : "");
    $("dataset-number").hidden = true;
    $("dataset-pick").hidden = false;
    $("create").hidden = false;
  }

  function datasetId() {
    const value = (datasets ? $("datasets").value : $("dataset").value).trim();
    return /^[1-9]\d*$/.test(value) ? value : null;
  }

  function roleOf(dataset) {
    const found = (datasets || []).find((d) => String(d.dataset_id) === dataset);
    return found ? found.role : null;
  }

  function remember() {
    session.set(DATASET, datasetId() || "");
  }

  async function createDataset() {
    const id = $("new-dataset").value.trim();
    if (!/^[1-9]\d*$/.test(id)) {
      showMessage("A dataset id is a positive whole number.");
      return;
    }
    clearMessage();
    $("create-button").disabled = true;
    try {
      await api(`/datasets/${id}`, { method: "PUT" });
      $("new-dataset").value = "";
      await refreshDatasets(id);
      remember();
      loadGrid(true);
    } catch (error) {
      showMessage(error.status === 409 ? `${error.message} (someone else's: ask one of its owners to add you)` : error.message);
    } finally {
      $("create-button").disabled = false;
    }
  }

  // --- the file list ---------------------------------------------------------------------------

  // The type the file's first bytes show by the API's `signatures` (the S3 trigger's own rule, described
  // in GET /limits): the first that matches; null: not an image.
  function sniff(head, signatures) {
    const ascii = (from, text) => [...text].every((c, i) => head[from + i] === c.charCodeAt(0));
    const matches = (s) => {
      const bytesMatch = (m) => m.hex.match(/../g).every((pair, i) => head[m.offset + i] === parseInt(pair, 16));
      if (!s.magic.every(bytesMatch)) return false;
      if (!s.ftyp_brands.length) return true;
      if (!ascii(4, "ftyp")) return false;
      // Major brand, minor version, then compatible brands to the end of the box.
      const end = Math.min(((head[0] << 24) | (head[1] << 16) | (head[2] << 8) | head[3]) >>> 0, head.length);
      const at = [8];
      if (!s.major_brand_only) for (let i = 16; i + 4 <= end; i += 4) at.push(i);
      return at.some((i) => s.ftyp_brands.some((brand) => ascii(i, brand)));
    };
    const found = signatures.find(matches);
    return found ? found.mime_type : null;
  }

  // [mime | null, reason | null]: what the file is by its bytes, and why it is refused (null: it is not).
  async function judge(file, rules) {
    if (!rules) return [null, "not accepted: the API's upload rules could not be read (reload the page)"];
    if (file.size < rules.min_file_size) return [null, file.size === 0 ? "not accepted: empty file" : `not accepted: under ${rules.min_file_size} bytes`];
    if (file.size > rules.max_file_size) return [null, `not accepted: over ${formatLimit(rules.max_file_size)} (${file.size} bytes)`];
    let mime;
    try {
      mime = sniff(new Uint8Array(await file.slice(0, rules.sniff_bytes).arrayBuffer()), rules.signatures);
    } catch {
      return [null, "not accepted: the file could not be read"];
    }
    if (!mime) return [null, `not accepted: not a ${typeNames(rules)} image (by its content)`];
    if (!rules.mime_types.includes(mime)) return [mime, `not accepted: ${typeName(rules, mime)} images are not accepted (${typeNames(rules)} only)`];
    if (file.name.length > rules.max_filename_length) return [mime, `not accepted: name over ${rules.max_filename_length} characters`];
    return [mime, null];
  }

  function formatSize(bytes) {
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  }

  // A limit as people write it: a whole number of MiB without ".0".
  const formatLimit = (bytes) => formatSize(bytes).replace(/\.0 /, " ");

  function cell(row, className) {
    const td = row.insertCell();
    if (className) td.className = className;
    return td;
  }

  // --- content hashes: SHA-256 in a Web Worker, so the API can tell bytes it holds already ----------

  let hasher = null; // the worker, started with the first file
  const hashing = new Map(); // id -> resolve
  let hashIds = 0;

  // The file's SHA-256 (hex), or null where the browser cannot hash (no Worker, or SubtleCrypto only
  // in secure contexts): the file is then sent without one, as before.
  function hashOf(file) {
    if (!hasher) {
      try {
        hasher = new Worker("hash-worker.js");
      } catch {
        return Promise.resolve(null);
      }
      hasher.onmessage = ({ data }) => {
        hashing.get(data.id)?.(data.sha256 || null);
        hashing.delete(data.id);
      };
      hasher.onerror = () => {
        for (const resolve of hashing.values()) resolve(null);
        hashing.clear();
      };
    }
    const id = ++hashIds;
    return new Promise((resolve) => {
      hashing.set(id, resolve);
      hasher.postMessage({ id, file });
    });
  }

  async function addFiles(found) {
    const rules = await limits;
    const verdicts = await Promise.all(found.map(([file]) => judge(file, rules)));
    for (const [n, [file, path]] of found.entries()) {
      const [mime, refused] = verdicts[n];
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
      setState(item, refused ? "refused" : "ready", refused || "ready");
      if (!refused) item.sha256 = hashOf(file); // under way while the user picks more files
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
    for (const [state, label] of [["duplicate", "already in the dataset"], ["error", "rejected by the server"], ["failed", "failed"], ["refused", "not accepted"]]) {
      if (count(state)) parts.push(`${count(state)} ${label}`);
    }
    $("summary").textContent = parts.join(" · ");
    $("start").textContent = ready ? `Upload ${ready} file${ready === 1 ? "" : "s"}` : "Upload";
    $("start").disabled = !config || running || ready === 0;
    $("clear").disabled = running || watching.size > 0;
  }

  // --- uploading -------------------------------------------------------------------------------

  async function start() {
    if (running) return;
    const dataset = datasetId();
    if (!dataset) {
      showMessage(datasets ? "Choose a dataset, or create one, first." : "Choose a dataset id (a positive whole number) first.");
      return;
    }
    remember();
    clearMessage();
    running = true;
    update();
    try {
      let todo;
      while ((todo = items.filter((i) => i.state === "ready")).length) {
        const chunk = todo.slice(0, Math.min(BATCH, ((await limits) || { max_batch: 1 }).max_batch));
        chunk.forEach((i) => setState(i, "uploading", "preparing…"));
        try {
          await prepare(dataset, chunk);
        } catch (error) {
          chunk.forEach((i) => setState(i, "ready", "ready"));
          throw error;
        }
        // Bytes the dataset holds already, or refused before, get no URL: nothing to send.
        await pool(chunk.filter((i) => i.url), PARALLEL, (item) => put(dataset, item));
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
    const hashes = await Promise.all(chunk.map((i) => i.sha256));
    const files = chunk.map((i, n) => {
      const file = { filename: i.file.name, file_size: i.file.size, mime_type: i.mime };
      return hashes[n] ? { ...file, sha256: hashes[n] } : file;
    });
    const { body } = await api(`/datasets/${dataset}/images/prepare-upload`, {
      method: "POST",
      body: JSON.stringify({ files }),
    });
    chunk.forEach((item, n) => {
      const upload = body.uploads[n];
      if (item.imageId && item.imageId !== upload.image_id) {
        // A retry: the record of the abandoned URL goes (best effort; cleanup would remove it later).
        // The same image back means its bytes' URL still had time: a fresh URL for it, nothing to drop.
        api(`/images/${item.imageId}`, { method: "DELETE" }).catch(() => {});
      }
      item.imageId = upload.image_id;
      item.url = upload.upload_url;
      item.headers = upload.upload_headers || { "Content-Type": item.mime };
      if (upload.duplicate_of != null) {
        setState(item, "duplicate", `already in the dataset (#${upload.duplicate_of})`);
      } else if (upload.rejected_before) {
        const reason = upload.rejected_before;
        setState(item, "error", `rejected before: ${reason.message} (${reason.code})`);
      }
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
        if (!item.url) return; // its bytes were judged meanwhile (uploaded by someone, or refused)
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
      // The headers signed into the URL (the length too): Content-Type, and the checksum of the bytes
      // when a hash was sent, so that storage takes no other bytes.
      for (const [name, value] of Object.entries(item.headers || { "Content-Type": item.mime })) {
        xhr.setRequestHeader(name, value);
      }
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
      setState(item, "uploaded", `uploaded · ${dimensions(image)}`);
      showPreview(item, image);
    } else if (Date.now() - item.since > VERDICT_TIMEOUT_MS) {
      watching.delete(item);
      setState(item, "failed", `${image.status}, not verified yet`);
    }
  }

  // Width × height as the picture is shown (after its orientation); the API's stored size for records
  // written before display sizes existed.
  const dimensions = (image) =>
    `${image.display_width ?? image.width ?? "?"}×${image.display_height ?? image.height ?? "?"}`;

  function showPreview(item, image) {
    const url = URL.createObjectURL(item.file);
    const placeholder = placeholderUrl(image.placeholder);
    paintPlaceholder(item.preview, placeholder);
    item.preview.addEventListener("load", () => URL.revokeObjectURL(url), { once: true });
    item.preview.addEventListener(
      "error",
      () => {
        URL.revokeObjectURL(url);
        // A browser that cannot show the file itself (HEIC, mostly): its placeholder stays.
        if (placeholder) item.preview.src = placeholder;
      },
      { once: true },
    );
    item.preview.src = url;
    item.preview.hidden = false;
  }

  // The placeholder behind an <img> until the image itself has loaded.
  function paintPlaceholder(img, url) {
    if (!url) return;
    img.classList.add("placeholder");
    img.style.backgroundImage = `url("${url}")`;
    img.addEventListener("load", () => {
      if (img.src !== url) img.style.backgroundImage = "";
    });
  }

  // A data: URL of the record's ThumbHash placeholder (base64), or null.
  function placeholderUrl(base64) {
    if (!base64) return null;
    try {
      const { w, h, rgba } = thumbHashToRGBA(Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)));
      const canvas = document.createElement("canvas");
      canvas.width = w;
      canvas.height = h;
      canvas.getContext("2d").putImageData(new ImageData(rgba, w, h), 0, 0);
      return canvas.toDataURL("image/png");
    } catch {
      return null; // a placeholder the page cannot read is only a missing placeholder
    }
  }

  // ThumbHash's decoder, after Evan Wallace's reference implementation (MIT licence,
  // github.com/evanw/thumbhash): a hash of ~25 bytes to a small RGBA picture (32 px on its long side).
  function thumbHashToRGBA(hash) {
    const { PI, min, max, cos, round } = Math;
    const header24 = hash[0] | (hash[1] << 8) | (hash[2] << 16);
    const header16 = hash[3] | (hash[4] << 8);
    const lDc = (header24 & 63) / 63;
    const pDc = ((header24 >> 6) & 63) / 31.5 - 1;
    const qDc = ((header24 >> 12) & 63) / 31.5 - 1;
    const lScale = ((header24 >> 18) & 31) / 31;
    const hasAlpha = header24 >> 23;
    const pScale = ((header16 >> 3) & 63) / 63;
    const qScale = ((header16 >> 9) & 63) / 63;
    const isLandscape = header16 >> 15;
    const lx = max(3, isLandscape ? (hasAlpha ? 5 : 7) : header16 & 7);
    const ly = max(3, isLandscape ? header16 & 7 : hasAlpha ? 5 : 7);
    const aDc = hasAlpha ? (hash[5] & 15) / 15 : 1;
    const aScale = (hash[5] >> 4) / 15;
    const acStart = hasAlpha ? 6 : 5;
    let acIndex = 0;
    const decodeChannel = (nx, ny, scale) => {
      const ac = [];
      for (let cy = 0; cy < ny; cy++) {
        for (let cx = cy ? 0 : 1; cx * ny < nx * (ny - cy); cx++) {
          ac.push((((hash[acStart + (acIndex >> 1)] >> ((acIndex++ & 1) << 2)) & 15) / 7.5 - 1) * scale);
        }
      }
      return ac;
    };
    // Saturation boosted by 1.25 to make up for the quantization, as the reference does.
    const lAc = decodeChannel(lx, ly, lScale);
    const pAc = decodeChannel(3, 3, pScale * 1.25);
    const qAc = decodeChannel(3, 3, qScale * 1.25);
    const aAc = hasAlpha && decodeChannel(5, 5, aScale);
    const header = hash[3];
    const ratio = (isLandscape ? (hasAlpha ? 5 : 7) : header & 7) / (isLandscape ? header & 7 : hasAlpha ? 5 : 7);
    const w = round(ratio > 1 ? 32 : 32 * ratio);
    const h = round(ratio > 1 ? 32 / ratio : 32);
    const rgba = new Uint8ClampedArray(w * h * 4);
    const fx = [];
    const fy = [];
    for (let y = 0, i = 0; y < h; y++) {
      for (let x = 0; x < w; x++, i += 4) {
        let l = lDc;
        let p = pDc;
        let q = qDc;
        let a = aDc;
        for (let cx = 0, n = max(lx, hasAlpha ? 5 : 3); cx < n; cx++) fx[cx] = cos((PI / w) * (x + 0.5) * cx);
        for (let cy = 0, n = max(ly, hasAlpha ? 5 : 3); cy < n; cy++) fy[cy] = cos((PI / h) * (y + 0.5) * cy);
        for (let cy = 0, j = 0; cy < ly; cy++) {
          for (let cx = cy ? 0 : 1, fy2 = fy[cy] * 2; cx * ly < lx * (ly - cy); cx++, j++) l += lAc[j] * fx[cx] * fy2;
        }
        for (let cy = 0, j = 0; cy < 3; cy++) {
          for (let cx = cy ? 0 : 1, fy2 = fy[cy] * 2; cx < 3 - cy; cx++, j++) {
            const f = fx[cx] * fy2;
            p += pAc[j] * f;
            q += qAc[j] * f;
          }
        }
        if (hasAlpha) {
          for (let cy = 0, j = 0; cy < 5; cy++) {
            for (let cx = cy ? 0 : 1, fy2 = fy[cy] * 2; cx < 5 - cy; cx++, j++) a += aAc[j] * fx[cx] * fy2;
          }
        }
        const b = l - (2 / 3) * p;
        const r = (3 * l - b + q) / 2;
        const g = r - q;
        rgba[i] = max(0, 255 * min(1, r));
        rgba[i + 1] = max(0, 255 * min(1, g));
        rgba[i + 2] = max(0, 255 * min(1, b));
        rgba[i + 3] = max(0, 255 * min(1, a));
      }
    }
    return { w, h, rgba };
  }

  function settled() {
    if (!running && !watching.size && items.some((i) => i.state === "uploaded")) loadGrid(true);
  }

  // --- the dataset's thumbnails ----------------------------------------------------------------

  async function loadGrid(reset) {
    const dataset = datasetId();
    if (!dataset || !config) return;
    const generation = reset ? ++gridGeneration : gridGeneration;
    const query = new URLSearchParams({ limit: gridPage, status: "uploaded" });
    if (!reset && gridCursor) query.set("cursor", gridCursor);
    $("more").disabled = true;
    try {
      const { body, headers } = await api(`/datasets/${dataset}/images/with-urls?${query}`);
      if (generation !== gridGeneration) return; // another dataset was asked for meanwhile
      if (reset) $("grid").replaceChildren();
      showGridTitle(dataset);
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
      if (reset && generation === gridGeneration) {
        // Not another dataset's thumbnails under this one's name.
        $("grid").replaceChildren();
        showGridTitle(dataset);
        $("more").hidden = true;
      }
      showMessage(error.message);
    } finally {
      $("more").disabled = false;
    }
  }

  function showGridTitle(dataset) {
    const role = roleOf(dataset);
    $("grid-dataset").textContent = role ? `${dataset} (${role})` : dataset;
  }

  function card(image) {
    const li = document.createElement("li");
    li.dataset.imageId = image.id;
    const img = li.appendChild(document.createElement("img"));
    img.loading = "lazy";
    img.alt = image.filename;
    paintPlaceholder(img, placeholderUrl(image.placeholder));
    img.src = image.thumbnail_url || image.download_url || "";
    const caption = li.appendChild(document.createElement("div"));
    caption.className = "caption";
    caption.textContent = image.filename;
    const meta = li.appendChild(document.createElement("div"));
    meta.className = "meta";
    meta.textContent = `#${image.id} · ${dimensions(image)} · ${formatSize(image.file_size)}`;
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
      if (!config) return;
      if (!datasetId()) {
        showMessage(datasets ? "Choose a dataset, or create one, first." : "Choose a dataset id (a positive whole number) first.");
        return;
      }
      remember();
      clearMessage();
      loadGrid(true);
    });
    $("datasets").addEventListener("change", () => {
      remember();
      clearMessage();
      loadGrid(true);
    });
    $("create").addEventListener("submit", (event) => {
      event.preventDefault();
      createDataset();
    });
    $("sign-in").addEventListener("click", signIn);
    $("sign-out").addEventListener("click", () => {
      signOut({ everything: true });
      clearMessage();
    });
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      useTypedToken();
    });
    $("token").addEventListener("change", useTypedToken);
    $("more").addEventListener("click", () => loadGrid(false));
  }

  async function init() {
    forgetOldSettings();
    wire();
    try {
      config = await loadConfig();
    } catch (error) {
      showMessage(error.message); // nothing is sent anywhere without a valid configuration
      return;
    }
    // Once per page load, in parallel with the rest; files chosen meanwhile wait for the rules.
    limits = loadLimits().then(
      (rules) => {
        showRules(rules);
        return rules;
      },
      (error) => {
        $("rules").textContent = "The API's upload rules are unknown: files cannot be checked or sent.";
        showMessage(error.message);
        return null;
      },
    );
    token = session.get(TOKEN);
    renderAuth();
    try {
      await completeSignIn();
    } catch (error) {
      showMessage(error.message);
    }
    gridPage = Number(params.get("page_size")) || 24;
    const preferred = params.get("dataset") || session.get(DATASET);
    if (/^[1-9]\d*$/.test(preferred || "")) $("dataset").value = preferred;
    await refreshDatasets(preferred);
    update();
    // Signed out of a deployment with sign-in: the note says to sign in; asking the API would only 401.
    if (datasetId() && (token || !config.oidc)) loadGrid(true);
  }

  init();
})();
