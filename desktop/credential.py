"""The tray's console credential, and the one-time link that signs the browser in with it.

The tray's token is issued once (into the store, labelled "tray", long-lived) and its value is
kept only in the OS keyring (service "moltbot"), never in a file. To open the console the tray
trades it for a one-time code (`POST /api/v1/login/code`, see gateway/api/login_codes.py) and
opens the console at `/#code=...`: the code is in a fragment (never sent to a server), works
once and for a minute, so nothing lasting reaches the browser's address bar or history.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from gateway.common.secrets import SERVICE, NoSecureKeyring, secure_backend
from gateway.common.workspace import Workspace
from gateway.core.store import Store
from gateway.guards.tokens import issue_token

log = logging.getLogger(__name__)

LIFETIME = 10 * 365 * 86400.0
NO_KEYRING = "No OS keyring: sign in with `moltbot dashboard --token-gen`"


class ConsoleCredential:
    """The tray's token for one workspace, in `backend` (default: the OS keyring, refused when
    it is not a secure store, as `moltbot secret set` refuses it)."""

    def __init__(self, ws: Workspace, backend: Any = None) -> None:
        self.refused = ""
        if backend is None:
            try:
                backend = secure_backend()
            except NoSecureKeyring as e:
                self.refused = str(e)
        self.ws = ws
        self.backend = backend
        self.name = f"tray:{ws.root}"

    def problem(self) -> str | None:
        """Why no secure keyring exists here (then the menu says so), or None. Known without
        asking the keyring anything: asking may open its unlock (or "choose a password")
        dialog, which must wait until the user opens the console, not hold up the icon."""
        if self.refused:
            log.warning("%s", self.refused)
            return NO_KEYRING
        return None

    def token(self, renew: bool = False) -> str:
        """The stored token, or (first use, or `renew`) a new one put in the keyring."""
        if not renew and (existing := self.backend.get_password(SERVICE, self.name)):
            return str(existing)
        store = Store(self.ws.db_url)
        try:
            token, _ = issue_token(store, LIFETIME, label="tray")
        finally:
            store.close()
        self.backend.set_password(SERVICE, self.name, token)
        return token


def console_link(url: str, credential: ConsoleCredential) -> str:
    """A link to the console that signs the browser in once.

    A token the gateway does not know (its database was replaced) is renewed once.
    """
    for renew in (False, True):
        headers = {"Authorization": f"Bearer {credential.token(renew)}"}
        response = httpx.post(f"{url}/api/v1/login/code", headers=headers, timeout=10)
        if response.status_code != 401:
            break
    response.raise_for_status()
    return f"{url}/#code={response.json()['code']}"
