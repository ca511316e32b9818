// JSON over fetch with the login cookie; an error carries the server's sentence.
export class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

export async function api(path, options = {}) {
  const init = {credentials: "same-origin", headers: {}, ...options};
  if (options.json !== undefined) {
    init.method = init.method || "POST";
    init.headers = {"Content-Type": "application/json", ...init.headers};
    init.body = JSON.stringify(options.json);
  }
  const r = await fetch(path, init);
  const body = await r.json().catch(() => ({}));
  if (!r.ok && !(r.status === 422 && body.problems)) {
    const err = body.error || {};
    if (r.status === 401) window.dispatchEvent(new CustomEvent("moltbot:signed-out"));
    throw new ApiError(r.status, err.code || "error", err.message || `HTTP ${r.status}`);
  }
  return body;
}

export {socketUrl} from "/static/wsclient.js"; // ws: or wss: to this origin
