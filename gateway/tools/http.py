"""HTTP GET and POST to allowlisted hosts, with a size cap and a time limit.

What the caller can rely on:
- Only http and https; the host must match tools.allowed_hosts: an exact name ("api.x.com"),
  a "*.x.com" entry (sub-domains only, not x.com itself) or "*" (every host, written out).
  An empty list refuses everything. Names are compared, not addresses: "localhost" and
  "127.0.0.1" are different entries, and a listed name is trusted wherever DNS points it.
- Redirects are followed by hand, at most 5, and every hop is checked like the first URL.
  Authorization, Cookie and Proxy-Authorization are dropped when a hop changes origin.
- The body is streamed and decompressed with a bound, stopping at max_bytes (truncated=True),
  so a huge or gzip-bomb response cannot fill memory.
- `timeout` bounds every network wait and the whole exchange; going over raises ToolError.
- Proxy and .netrc settings from the environment are ignored (they could add credentials or
  route requests elsewhere). Logs carry method, host and path only: never headers, never the
  query string, as either may hold secrets.
A fresh client per request: tool calls are rare, and nothing pooled outlives the call.
"""

from __future__ import annotations

import codecs
import json as jsonlib
import logging
import time
import zlib
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.tools.base import Tool, ToolError, ToolRefused, check_arguments, get_str
from gateway.tools.reach import Reach

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
_SENSITIVE = ("authorization", "cookie", "proxy-authorization")


_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "method": {"type": "string", "enum": ["GET", "POST"]},
        "url": {"type": "string"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "json": {"type": "object", "description": "JSON body (POST)."},
        "data": {"type": "string", "description": "Raw text body (POST)."},
    },
    "required": ["url"],
}


@dataclass(frozen=True)
class HttpResult:
    """The final response after redirects; headers have lower-case names; url has no userinfo."""

    status: int
    headers: dict[str, str]
    text: str
    truncated: bool
    url: str = ""


class _Body:
    """Collects at most `limit` decoded bytes, decompressing gzip/deflate with a bound."""

    def __init__(self, content_encoding: str, limit: int, url: str) -> None:
        encoding = content_encoding.strip().lower()
        if encoding in ("", "identity"):
            self.inflater = None
        elif encoding in ("gzip", "x-gzip", "deflate"):
            self.inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header
        else:
            raise ToolError(f"http: {url} answered with unsupported content-encoding {encoding!r}")
        self.data = bytearray()
        self.limit = limit
        self.truncated = False
        self.url = url

    def feed(self, chunk: bytes) -> bool:
        """Add a raw chunk; True once the limit is reached and reading should stop."""
        room = self.limit - len(self.data)
        if self.inflater is not None:
            try:
                chunk = self.inflater.decompress(chunk, room + 1)
            except zlib.error as e:
                raise ToolError(f"http: {self.url} sent a corrupt compressed body: {e}") from e
        if len(chunk) > room:
            self.data += chunk[:room]
            self.truncated = True
            return True
        self.data += chunk
        return False


class HttpTool(Tool):
    """GET/POST to allowlisted hosts; see the module docstring for the guarantees."""

    name = "http"
    description = "Fetch a URL with GET or POST (allowed hosts only); returns status and body text."
    parameters = _PARAMETERS

    def __init__(
        self, allowed_hosts: list[str], timeout: float = 10, max_bytes: int = 1024 * 1024
    ) -> None:
        self.reach = Reach(allowed_hosts)
        if timeout <= 0 or max_bytes <= 0:
            raise ValueError("http tool: timeout and max_bytes must be positive")
        self.allowed_hosts = self.reach.allowed_hosts
        self.timeout = timeout
        self.max_bytes = max_bytes

    def get(self, url: str, headers: dict[str, str] | None = None) -> HttpResult:
        return self._request("GET", url, headers, {})

    def post(
        self,
        url: str,
        json: Any = None,
        data: dict[str, str] | str | bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> HttpResult:
        """POST a JSON body, a form (dict) or raw text/bytes; at most one of json and data."""
        if json is not None and data is not None:
            raise ToolError("http: give either json or data for a POST, not both")
        body: dict[str, Any] = {}
        if json is not None:
            body["content"] = jsonlib.dumps(json).encode("utf-8")
            body["headers"] = {"content-type": "application/json"}
        elif isinstance(data, dict):
            body["data"] = data
        elif isinstance(data, (str, bytes)):
            body["content"] = data
        elif data is not None:
            raise ToolError(f"http: data must be text or a form dict, got {type(data).__name__}")
        return self._request("POST", url, headers, body)

    def call(self, arguments: dict[str, Any]) -> str:
        args = check_arguments(self.name, arguments)
        method = get_str(self.name, args, "method", "GET").upper()
        url = get_str(self.name, args, "url")
        headers = args.get("headers")
        if method == "GET":
            result = self.get(url, headers)
        elif method == "POST":
            result = self.post(url, json=args.get("json"), data=args.get("data"), headers=headers)
        else:
            raise ToolError(f"http: method {method!r} is not supported; use GET or POST")
        note = ""
        if result.truncated:
            note = (
                f" (body cut at {self.max_bytes} bytes; raise tools.max_bytes in "
                "config.yaml to read more)"
            )
        content_type = result.headers.get("content-type", "unknown")
        return f"HTTP {result.status}{note}\ncontent-type: {content_type}\n\n{result.text}"

    def _request(
        self, method: str, url: str, headers: dict[str, str] | None, body: dict[str, Any]
    ) -> HttpResult:
        sent_headers = httpx.Headers({"accept-encoding": "gzip, deflate"})
        sent_headers.update(body.pop("headers", {}))
        sent_headers.update(_check_headers(headers))  # case-insensitive: caller's wins
        current = self._check_url(url)
        deadline = time.monotonic() + self.timeout
        with httpx.Client(timeout=self.timeout, follow_redirects=False, trust_env=False) as client:
            for _ in range(MAX_REDIRECTS + 1):
                shown = _display(current)
                request = client.build_request(method, current, headers=sent_headers, **body)
                try:
                    response = client.send(request, stream=True)
                except httpx.TimeoutException as e:
                    raise self._timed_out(method, shown) from e
                except httpx.HTTPError as e:
                    raise ToolError(f"http: {method} {shown} failed: {e}") from e
                try:
                    log.info("http: %s %s -> %d", method, shown, response.status_code)
                    if not response.is_redirect:
                        return self._read(method, response, current, deadline)
                    location = response.headers["location"]
                finally:
                    response.close()
                try:
                    target = current.join(location)
                except httpx.InvalidURL as e:
                    raise ToolError(f"http: {shown} redirected to an invalid URL: {e}") from e
                next_url = self._check_url(target, redirected_from=shown)
                if response.status_code == 303 or (
                    response.status_code in (301, 302) and method == "POST"
                ):
                    method, body = "GET", {}
                    sent_headers.pop("content-type", None)
                if _origin(next_url) != _origin(current):
                    for name in _SENSITIVE:
                        sent_headers.pop(name, None)
                current = next_url
                if time.monotonic() > deadline:
                    raise self._timed_out(method, _display(current))
        start = _display(httpx.URL(url))
        raise ToolError(f"http: {start} redirected more than {MAX_REDIRECTS} times")

    def _read(
        self, method: str, response: httpx.Response, url: httpx.URL, deadline: float
    ) -> HttpResult:
        shown = _display(url)
        body = _Body(response.headers.get("content-encoding", ""), self.max_bytes, shown)
        try:
            for chunk in response.iter_raw():
                if body.feed(chunk):
                    break
                if time.monotonic() > deadline:
                    raise self._timed_out(method, shown)
        except httpx.TimeoutException as e:
            raise self._timed_out(method, shown) from e
        except httpx.HTTPError as e:
            raise ToolError(f"http: reading the body of {shown} failed: {e}") from e
        charset = response.charset_encoding or "utf-8"
        try:
            codecs.lookup(charset)
        except LookupError:
            charset = "utf-8"
        return HttpResult(
            status=response.status_code,
            headers={k.lower(): v for k, v in response.headers.items()},
            text=bytes(body.data).decode(charset, "replace"),
            truncated=body.truncated,
            url=str(url.copy_with(userinfo=b"")),
        )

    def _check_url(self, url: str | httpx.URL, redirected_from: str | None = None) -> httpx.URL:
        """Parse and check scheme and host; refusals say which URL and how to allow it."""
        if not isinstance(url, (str, httpx.URL)):
            raise ToolError(f"http: url must be a string, got {type(url).__name__}")
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError) as e:
            raise ToolError(f"http: {str(url)[:200]!r} is not a valid URL: {e}") from e
        via = f" (redirect from {redirected_from})" if redirected_from else ""
        if parsed.scheme not in ("http", "https"):
            raise ToolRefused(
                f"http: refused {_display(parsed)}{via}: scheme {parsed.scheme!r} is not "
                "allowed; only http and https URLs can be fetched"
            )
        host = parsed.raw_host.decode("ascii").lower().rstrip(".")
        if not host:
            raise ToolError(f"http: {_display(parsed)} has no host")
        refused = self.reach.refusal(host)
        if refused:
            raise ToolRefused(f"http: refused {_display(parsed)}{via}: {refused}")
        return parsed

    def _timed_out(self, method: str, shown: str) -> ToolError:
        return ToolError(
            f"http: {method} {shown} timed out after {self.timeout} s; "
            "raise tools.http_timeout in config.yaml if the server is just slow"
        )


def _check_headers(headers: object) -> dict[str, str]:
    """Validate caller headers without ever echoing their values (they may be secrets)."""
    if headers is None:
        return {}
    if not isinstance(headers, dict):
        raise ToolError(f"http: headers must be an object, got {type(headers).__name__}")
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ToolError(f"http: header {key!r} must have a string name and value")
        if any(c in key + value for c in "\r\n\x00"):
            raise ToolRefused(f"http: refused header {key!r}: line breaks and NUL are not allowed")
    return dict(headers)


def _display(url: httpx.URL) -> str:
    """scheme://host[:port]/path: what errors and logs show (no userinfo, no query)."""
    return str(url.copy_with(userinfo=b"", query=None, fragment=None))


def _origin(url: httpx.URL) -> tuple[str, bytes, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.raw_host.lower(), url.port or default
