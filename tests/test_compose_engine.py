"""The compose tool with a real engine: a skill starts a declared stack through the real
gateway, sees it in `ps`, calls its web service over the published port, reads its logs and
stops it, and the containers are gone.

The image is built here from a tarball (busybox and a page: `podman import`), so no registry
is needed. Skipped, with the engine's own words, where the machine cannot run containers:
no podman or podman-compose (Debian: `apt-get install podman podman-compose runc`), no
busybox, or a kernel/cgroup setup podman cannot start a container on. Some machines
(this project's among them: cgroups v1 with a v2 mount, lower ulimits) need runc and explicit
ulimits; the fixture then gives podman a containers.conf saying so, through CONTAINERS_CONF,
which the compose tool passes on to the engine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import (
    GatewayProcess,
    assert_only_gateway_left,
    free_port,
    model_config,
    write_config,
)
from tests.fakes.fake_model import FakeModelServer
from tests.test_compose_gateway import STACK_SKILL
from tests.test_skills_gateway import wait_until

IMAGE = "localhost/moltbot-test-web:1"
PROJECT = "moltbot-web"
CONF = """[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
"""


def podman(*args: str, env: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)


def image_tarball(folder: Path) -> Path:
    """A root file system with busybox (sh, httpd) and nothing else."""
    busybox = shutil.which("busybox")
    assert busybox is not None
    root = folder / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy(busybox, root / "bin" / "busybox")
    for name in ("sh", "httpd", "true"):
        (root / "bin" / name).symlink_to("busybox")
    tarball = folder / "rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(root, arcname=".")
    return tarball


@pytest.fixture(scope="module")
def engine_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment under which podman runs a container here, or a skip saying why not."""
    missing = [p for p in ("podman", "podman-compose", "busybox") if shutil.which(p) is None]
    if missing:
        pytest.skip(f"no real compose engine here: {', '.join(missing)} not installed")
    folder = tmp_path_factory.mktemp("engine")
    made = podman("import", str(image_tarball(folder)), IMAGE)
    if made.returncode != 0:
        pytest.skip(f"podman cannot import an image here: {made.stderr.strip()[-300:]}")
    env = dict(os.environ)
    ran = podman("run", "--rm", IMAGE, "/bin/true", env=env)
    if ran.returncode != 0 and shutil.which("runc") is not None:
        (folder / "containers.conf").write_text(CONF, encoding="utf-8")
        env["CONTAINERS_CONF"] = str(folder / "containers.conf")
        first = ran.stderr.strip()
        ran = podman("run", "--rm", IMAGE, "/bin/true", env=env)
        if ran.returncode != 0:
            ran.stderr = f"{first}; with runc and ulimits: {ran.stderr.strip()}"
    if ran.returncode != 0:
        podman("rmi", IMAGE)
        pytest.skip(f"podman cannot run a container here: {ran.stderr.strip()[-400:]}")
    yield env
    podman("rmi", "-f", IMAGE, env=env)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, model: FakeModelServer,
       engine_env: dict[str, str]) -> Iterator[GatewayProcess]:
    home = tmp_path_factory.mktemp("engine-gw") / "ai-gateway"
    web = home / "tools" / "web"
    (web / "www").mkdir(parents=True)
    (web / "www" / "index.html").write_text("hello from a real container\n", encoding="utf-8")
    port = free_port()
    (web / "compose.yaml").write_text(
        f"services:\n  web:\n    image: {IMAGE}\n"
        "    command: [\"/bin/httpd\", \"-f\", \"-v\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"
        "    volumes: [\"./www:/www:ro\"]\n"
        f"    ports: [\"127.0.0.1:{port}:8080\"]\n", encoding="utf-8")
    (home / "skills").mkdir(parents=True)
    (home / "skills" / "stack.py").write_text(STACK_SKILL, encoding="utf-8")
    write_config(home, {**model_config(model.url),
                        "tools": {"compose": {"web": "tools/web/compose.yaml"}}})
    saved = dict(os.environ)
    os.environ.update(engine_env)
    try:
        gateway = GatewayProcess(home, free_port()).start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    yield gateway
    gateway.stop()
    with contextlib.suppress(subprocess.SubprocessError):
        subprocess.run(["podman-compose", "-p", PROJECT, "-f", str(web / "compose.yaml"),
                        "down"], capture_output=True, timeout=120, env=engine_env, cwd=web)
    podman("network", "rm", f"{PROJECT}_default", env=engine_env)  # podman-compose keeps it


@pytest.fixture(autouse=True)
def no_leftover_processes(gw: GatewayProcess) -> Iterator[None]:
    yield
    assert_only_gateway_left(gw)


def containers(env: dict[str, str]) -> list[str]:
    listed = podman("ps", "-a", "--filter", f"label=io.podman.compose.project={PROJECT}",
                    "--format", "{{.Names}} {{.Status}}", env=env)
    return listed.stdout.splitlines()


def test_a_skill_starts_calls_and_stops_a_real_stack(gw: GatewayProcess,
                                                     engine_env: dict[str, str]) -> None:
    def stack(action: str, **more: object) -> str:
        return str(gw.post("/stack " + json.dumps({"stack": "web", "action": action,
                                                   **more})).json()["reply"])

    up = stack("up")
    assert up.startswith("web is up"), up
    assert [line.split()[0] for line in containers(engine_env)] == [f"{PROJECT}_web_1"]
    assert "Up" in stack("ps")
    called = wait_until(lambda: (said := stack("call", service="web", port=8080,
                                               path="/index.html")).startswith("HTTP 200")
                        and said, 30)
    assert called.endswith("hello from a real container\n")
    assert "response:200" in stack("logs", tail=20)  # httpd -v logged the call
    down = stack("down")
    assert down.startswith("web is down"), down
    assert containers(engine_env) == []
    refused = stack("call", service="web", port=8080, path="/")
    assert refused.startswith("failed: ToolError: http: GET http://127.0.0.1:")
