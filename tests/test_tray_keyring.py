"""The tray's console sign-in against a real Secret Service (gnome-keyring on its own bus).

The tray's token is made once and lives only in the keyring; "Open console" hands the browser
a one-time code, which buys exactly one session cookie and never the tray's token.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gateway.common.secrets import SERVICE
from gateway.common.workspace import Workspace, ensure_workspace
from gateway.core.store import Store, tokens
from tests.conftest import GatewayProcess, free_port, model_config, write_config
from tests.fakes.fake_model import FakeModelServer
from tests.test_tray import click, running_gateway
from tests.tray_support import (
    SecretService,
    make_fake_desktop,
    running_secret_service,
    wait_for_secret_service,
)


@pytest.fixture
def secret_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretService]:
    with running_secret_service(tmp_path) as service:
        for key, value in service.env.items():
            monkeypatch.setenv(key, value)
        yield service


@pytest.fixture
def keyring_backend(secret_service: SecretService) -> Any:
    from keyring.backends import SecretService as backend

    found = backend.Keyring()
    wait_for_secret_service(found)
    return found


def tray_tokens(home: Path) -> list[str]:
    store = Store(Workspace(home).db_url)
    try:
        with store.engine.connect() as conn:
            return [r.label for r in conn.execute(select(tokens.c.label))
                    if r.label == "tray"]
    finally:
        store.close()


def test_open_console_signs_in_once_with_a_code(
        tmp_path: Path, home: Path, keyring_backend: Any, fake_model: FakeModelServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from desktop.autostart import XdgAutostart
    from desktop.credential import ConsoleCredential
    from desktop.tray import TrayApp

    desktop = make_fake_desktop(tmp_path / "desktop")
    for key, value in {**desktop.env, "PYSTRAY_BACKEND": "dummy"}.items():
        monkeypatch.setenv(key, value)
    write_config(home, model_config(fake_model.url))
    ws = Workspace(home)
    ensure_workspace(ws)
    tray = TrayApp(ws, "127.0.0.1", free_port(), 10.0, ConsoleCredential(ws, keyring_backend),
                   XdgAutostart(tmp_path / "config"))
    tray.begin()
    try:
        assert tray.keyring_problem is None
        assert not item_visible(tray, "No OS keyring")
        click(tray, "Start gateway")
        gateway = running_gateway(tray)
        click(tray, "Open console")
        click(tray, "Open console")
        links = desktop.wait_opened(2)
        token = keyring_backend.get_password(SERVICE, f"tray:{ws.root}")
        assert token.startswith("mb_") and tray_tokens(home) == ["tray"]  # made once, reused
        assert all(link.startswith(f"{gateway.url}/#code=") for link in links)
        assert all(token not in link for link in links) and links[0] != links[1]

        # What the page does with the fragment: each code buys a cookie of its own, once.
        code = links[0].split("#code=", 1)[1]
        signed_in = httpx.post(f"{gateway.url}/api/v1/login", json={"code": code}, timeout=10)
        assert signed_in.status_code == 200, signed_in.text
        cookie = signed_in.cookies["moltbot_token"]
        assert cookie != token and cookie.startswith("mb_")
        whoami = httpx.get(f"{gateway.url}/api/v1/whoami", cookies={"moltbot_token": cookie})
        assert whoami.json()["principal"] == "token:console"
        again = httpx.post(f"{gateway.url}/api/v1/login", json={"code": code}, timeout=10)
        assert again.status_code == 401 and "used or expired" in again.text
    finally:
        tray.quit()
    assert not any(token.encode() in p.read_bytes() for p in tmp_path.rglob("*")
                   if p.is_file()), "the tray's token was written to a file"


def item_visible(tray: Any, prefix: str) -> bool:
    return any(str(i.text).startswith(prefix) for i in tray.icon.menu)  # visible items only


def test_a_token_the_store_forgot_is_renewed(tmp_path: Path, home: Path,
                                             keyring_backend: Any,
                                             fake_model: FakeModelServer) -> None:
    from desktop.credential import ConsoleCredential, console_link

    write_config(home, model_config(fake_model.url))
    ws = Workspace(home)
    ensure_workspace(ws)
    credential = ConsoleCredential(ws, keyring_backend)
    keyring_backend.set_password(SERVICE, credential.name, "mb_from_an_older_workspace")
    proc = GatewayProcess(home, free_port()).start()
    try:
        link = console_link(proc.url, credential)
    finally:
        proc.stop()
    assert "#code=" in link
    assert keyring_backend.get_password(SERVICE, credential.name) != "mb_from_an_older_workspace"
