"""The PyInstaller one-folder app (`installers/bundle.sh`), built once per test session.

The bundled binary is run as a user would: no Python, no checkout, its own MOLTBOT_HOME. It
starts the gateway (which starts itself, its skill hosts and its MCP host again through the
same binary's `-m` dispatch), answers /healthz, loads a skill dropped into the workspace, and
runs it, with the standard library and `moltbot_sdk` that skills import, and knowledge search
(jieba, bm25s).
The build takes about 40 s on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, GatewayProcess, free_port, model_config, write_config
from tests.fakes.fake_model import FakeModelServer
from tests.fakes.mcp_clock import FIXED_NOW
from tests.test_skills_gateway import wait_for_skill, wait_until

SKILL = '''\
import statistics
from email.mime.text import MIMEText

from moltbot_sdk import Skill, context


class Stats(Skill):
    @context.handle(intent="mean", command="/mean", description="The mean of some numbers")
    def mean(self, msg):
        numbers = [float(n) for n in msg["text"].split()]
        mail = MIMEText(f"mean {statistics.fmean(numbers):g}")
        return {"reply": mail.get_payload()}
'''


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/moltbot/moltbot, built from this checkout with this test run's interpreter."""
    dist = tmp_path_factory.mktemp("bundle") / "dist"
    build = subprocess.run([str(ROOT / "installers" / "bundle.sh"), "--dist", str(dist)],
                           env={**os.environ, "PYTHON": sys.executable}, capture_output=True,
                           text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    binary = dist / "moltbot" / "moltbot"
    assert binary.is_file() and os.access(binary, os.X_OK)
    return binary


def run_bundle(binary: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Outside the checkout and without PYTHONPATH: only what the bundle carries is there."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["MOLTBOT_HOME"] = str(home)
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.run([str(binary), *args], env=env, cwd=home.parent, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def bundled_gateway(bundle: Path, home: Path,
                    fake_model: FakeModelServer) -> Iterator[GatewayProcess]:
    """The gateway as `dist/moltbot/moltbot gateway start --port P` runs it, with a token,
    and an MCP tool server (a program of the owner's: here the tests' clock in this Python)."""
    write_config(home, {**model_config(fake_model.url), "mcp_servers": {"clock": {
        "command": [sys.executable, str(ROOT / "tests" / "fakes" / "mcp_clock.py")],
        "offer_to_model": ["now"]}}})
    gw = GatewayProcess(home, free_port())
    started = run_bundle(bundle, home, "gateway", "start", "--port", str(gw.port))
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        issued = run_bundle(bundle, home, "dashboard", "--token-gen", "--json")
        assert issued.returncode == 0, issued.stderr
        gw.token = json.loads(issued.stdout)["token"]
        yield gw
    finally:
        stopped = run_bundle(bundle, home, "gateway", "stop", "--port", str(gw.port))
        assert stopped.returncode == 0, stopped.stderr


def test_the_bundle_answers_version_and_refuses_other_modules(bundle: Path, home: Path) -> None:
    version = run_bundle(bundle, home, "--version")
    assert version.returncode == 0 and version.stdout.strip() == "moltbot, version 0.1.0"
    other = run_bundle(bundle, home, "-m", "http.server")
    assert other.returncode == 1
    assert "-m runs one of gateway.server, gateway.skills.host" in other.stderr


def test_the_bundled_gateway_serves_and_runs_a_skill(
        bundle: Path, bundled_gateway: GatewayProcess, fake_model: FakeModelServer) -> None:
    gw = bundled_gateway
    health = httpx.get(f"{gw.url}/healthz", timeout=5).json()
    assert health == {"status": "ok", "version": "0.1.0"}
    status = run_bundle(bundle, gw.home, "gateway", "status", "--port", str(gw.port))
    assert status.returncode == 0 and f"running: {gw.url}" in status.stdout
    pid = int((gw.home / "data" / f"gateway-{gw.port}.pid").read_text(encoding="utf-8"))
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[:3] == [str(bundle).encode(), b"-m", b"gateway.server"]

    # The workspace's examples came out of the bundle; the guide's FAQ skill searches them.
    assert (gw.home / "skills" / "auto_reply.py").exists()
    faq = gw.post("/faq_query where are the logs").json()["reply"]
    assert "log" in faq.lower() and faq != "未找到相关答案"
    (gw.home / "skills" / "stats.py").write_text(SKILL, encoding="utf-8")
    wait_for_skill(gw, "mean")
    assert gw.post("/mean 1 2 4.5").json()["reply"] == "mean 2.5"
    assert gw.post("hello bundle").json()["reply"] == "echo: hello bundle"

    # the MCP host runs from the bundle (`-m gateway.mcp.host`) and the model calls its tool
    wait_until(lambda: httpx.get(f"{gw.url}/api/v1/mcp", headers=gw.headers, timeout=5).json()[
        "servers"][0]["state"] == "running")
    fake_model.tool_call_when(contains="bundle time", name="clock__now", arguments={})
    assert gw.post("bundle time?").json()["reply"] == f"tool said: {FIXED_NOW} (UTC)"

    # doctor reads the libraries' versions from the metadata the bundle carries.
    fake_model.known_models = {"llama2"}
    doctor = run_bundle(bundle, gw.home, "doctor")
    assert doctor.returncode == 0, doctor.stdout
    assert f"ok    libraries the gateway runs on: bm25s {metadata.version('bm25s')}, " \
        in doctor.stdout
    assert f"watchdog {metadata.version('watchdog')}" in doctor.stdout


def test_the_windows_and_macos_scripts_match_the_spec(tmp_path: Path) -> None:
    """They cannot be built here: check that they name what the spec builds, and that the dmg
    script refuses to run off macOS with what to use instead."""
    iss = (ROOT / "installers" / "windows" / "moltbot.iss").read_text(encoding="utf-8")
    spec = (ROOT / "installers" / "moltbot.spec").read_text(encoding="utf-8")
    assert 'Source: "..\\..\\dist\\moltbot\\*"' in iss
    for exe in sorted(set(re.findall(r"\{app\}\\([\w-]+)\.exe", iss))):
        assert f'name="{exe}"' in spec, exe
    assert 'Subkey: "Software\\Microsoft\\Windows\\CurrentVersion\\Run"' in iss
    assert 'name="Moltbot.app"' in spec
    if sys.platform != "darwin":
        dmg = subprocess.run([str(ROOT / "installers" / "macos" / "build_dmg.sh")],
                             capture_output=True, text=True, timeout=30, cwd=tmp_path)
        assert dmg.returncode == 1 and "runs on macOS" in dmg.stderr
