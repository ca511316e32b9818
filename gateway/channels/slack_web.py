"""Slack's Web API as the Slack channel uses it: slack_sdk's sync `WebClient` (urllib over
gevent's patched sockets, no threads of its own), one per start, its failures as the outbox's
`RetryLater` / `DeliveryRefused` with a sentence saying what to fix.

Replies go as `markdown_text` (Slack renders the model's Markdown itself), split at its
12,000 characters; files with `files_upload_v2` into the same thread.
"""

from __future__ import annotations

import urllib.error
from pathlib import Path
from typing import Any

import httpx
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from gateway.channels.telegram_api import split
from gateway.channels.tls import ssl_context
from gateway.core.outbound import DeliveryRefused, RetryLater, parse_retry_after

MAX_MARKDOWN = 12000
RETRIED = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable",
                     "request_timeout"})
NETWORK = (urllib.error.URLError, OSError, TimeoutError, SlackRequestError)


def fix_for(error: str, channel: str = "", needed: str = "", token: str = "bot") -> str:
    """What the owner does about a Slack error code, as a sentence; `token` is the one that
    was used ("bot" or "app")."""
    if error in ("invalid_auth", "not_authed", "token_revoked", "token_expired",
                 "account_inactive"):
        if token == "app":
            return (f"Slack refused the app token ({error}): set channels.slack.app_token to "
                    "an app-level token (xapp-..., Basic Information > App-Level Tokens, "
                    "scope connections:write)")
        return (f"Slack refused the bot token ({error}): set channels.slack.bot_token to the "
                "app's Bot User OAuth Token (xoxb-..., OAuth & Permissions)")
    if error == "not_allowed_token_type":
        return ("Slack wants the other kind of token (not_allowed_token_type): bot_token is "
                "the xoxb-... token, app_token the app-level xapp-... token")
    if error == "not_in_channel":
        return (f"the app is not in channel {channel} (not_in_channel): invite it there with "
                "/invite @<your app>")
    if error == "channel_not_found":
        return f"Slack knows no channel {channel} the app can see (channel_not_found)"
    if error == "missing_scope":
        return (f"the app lacks the scope {needed or '(see the Slack app)'} (missing_scope): "
                "add it under OAuth & Permissions and reinstall the app")
    return f"Slack answered {error}"


class SlackWeb:
    """The bot token's Web API client."""

    def __init__(self, api_base: str, bot_token: str) -> None:
        self.client = WebClient(token=bot_token, base_url=api_base, timeout=30,
                                ssl=ssl_context() if api_base.startswith("https:") else None)
        self.bot_token = bot_token

    def whoami(self) -> dict[str, Any]:
        """`auth.test`: the bot's user id, bot id, name and workspace (raises SlackApiError)."""
        return dict(self.client.auth_test().data)  # type: ignore[arg-type]

    def post(self, channel: str, text: str, thread_ts: str | None,
             files: list[tuple[Path, str]]) -> None:
        """Files, then the text in pieces, into the thread; raises RetryLater or
        DeliveryRefused."""
        try:
            for path, name in files:
                self.client.files_upload_v2(channel=channel, file=str(path), filename=name,
                                            title=name, thread_ts=thread_ts)
            for piece in split(text, None, MAX_MARKDOWN) if text.strip() else []:
                self.client.chat_postMessage(channel=channel, markdown_text=piece,
                                             thread_ts=thread_ts)
        except SlackApiError as e:
            raise _failure(e, channel) from e
        except NETWORK as e:
            raise RetryLater(f"{type(e).__name__} reaching {self.client.base_url}") from e

    def download(self, url: str, into: Any) -> None:
        """A file a person shared (`url_private`), with the bot token (`files:read`)."""
        headers = {"Authorization": f"Bearer {self.bot_token}"}
        with httpx.stream("GET", url, headers=headers, timeout=60) as answer:
            kind = answer.headers.get("Content-Type", "")
            if answer.status_code != 200 or kind.startswith("text/html"):
                raise httpx.HTTPError(f"Slack answered {answer.status_code} ({kind or 'no type'})"
                                      "; the app needs the files:read scope")
            for chunk in answer.iter_bytes():
                into.write(chunk)


def _failure(e: SlackApiError, channel: str) -> Exception:
    status = e.response.status_code
    error = str(e.response.get("error") or status)
    if status == 429 or status >= 500 or error in RETRIED:
        retry = parse_retry_after((e.response.headers or {}).get("Retry-After") or
                                  (e.response.headers or {}).get("retry-after"))
        return RetryLater(f"Slack answered {status} {error}", retry)
    return DeliveryRefused(fix_for(error, channel, str(e.response.get("needed") or "")))
