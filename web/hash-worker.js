// SHA-256 of the files the upload page posts here, off its main thread (the page never freezes):
// {id, file} in, {id, sha256} (64 lowercase hex digits) or {id, error} out.
self.onmessage = async ({ data: { id, file } }) => {
  try {
    const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
    const sha256 = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
    self.postMessage({ id, sha256 });
  } catch (error) {
    self.postMessage({ id, error: String(error) });
  }
};
