"""The production files under installers/docker/ and installers/nginx/.

This machine has no Docker engine, so no image is built and no compose project runs. What is
checked instead: the compose file's services, ports, volumes and health checks, parsed; the
Dockerfile's instructions (base, non-root USER, HEALTHCHECK, EXPOSE, VOLUME, the runtime lock
installed with hashes before Moltbot --no-deps) and that each thing it copies is in the build
context; and, for real, the parts that run without Docker: the
entrypoint seeding the container's config.yaml and starting a gateway that takes its token from
MOLTBOT_TOKEN, the gateway's health-check command, nginx with the TLS config in front of a real
gateway (HTTPS, the HTTP redirect and a WebSocket), and Mosquitto with its config answering the
compose file's health check. Listen addresses are moved to free loopback ports for these runs.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websocket
import yaml

from gateway.common.options import ConfigError
from gateway.config import bind_problem, load_config
from tests.conftest import ROOT, GatewayProcess, free_port

DOCKER = ROOT / "installers" / "docker"
NGINX_CONF = ROOT / "installers" / "nginx" / "moltbot.conf"


def compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text(encoding="utf-8"))


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """(INSTRUCTION, arguments) per build stage, continuation lines joined, comments dropped."""
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    stages: list[list[tuple[str, str]]] = []
    for line in joined.splitlines():
        if not line.strip():
            continue
        word, _, rest = line.strip().partition(" ")
        if word.upper() == "FROM":
            stages.append([])
        stages[-1].append((word.upper(), rest.strip()))
    return stages


def instruction(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [args for word, args in stage if word == name]


def test_compose_services_ports_volumes_and_health_checks() -> None:
    spec = compose()
    services = spec["services"]
    assert set(services) == {"gateway", "nginx", "mosquitto", "ollama"}
    for name, service in services.items():
        assert service["healthcheck"]["test"][0] == "CMD", name
        assert service["restart"] == "unless-stopped", name

    gateway = services["gateway"]
    assert (DOCKER / gateway["build"]["context"]).resolve() == ROOT
    assert (ROOT / gateway["build"]["dockerfile"]).resolve() == DOCKER / "Dockerfile"
    assert "ports" not in gateway and gateway["expose"] == ["18789"]   # only nginx faces out
    assert gateway["volumes"] == ["moltbot-data:/data"]
    assert gateway["environment"]["MOLTBOT_TOKEN"].startswith("${MOLTBOT_TOKEN:?")
    assert gateway["environment"]["MOLTBOT_PUBLIC_HOST"].startswith("${MOLTBOT_PUBLIC_HOST:?")
    assert services["nginx"]["ports"] == ["80:80", "443:443"]
    assert services["nginx"]["depends_on"]["gateway"]["condition"] == "service_healthy"
    for name in ("mosquitto", "ollama"):
        assert "ports" not in services[name], name

    named = set(spec["volumes"])
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            assert target.startswith("/"), volume
            if source.startswith("."):
                if source != "./tls":  # the owner's certificates, copied in before `up`
                    assert (DOCKER / source).exists(), f"{name}: {source} is missing"
            else:
                assert source in named, f"{name}: volume {source} is not declared"
    nginx_mount = services["nginx"]["volumes"][0]
    assert (DOCKER / nginx_mount.split(":")[0]).resolve() == NGINX_CONF


def test_dockerfile_is_slim_non_root_and_checks_its_health() -> None:
    build, final = dockerfile_stages()
    assert instruction(build, "FROM")[0].startswith("python:3.11-slim")
    assert instruction(final, "FROM")[0].startswith("python:3.11-slim")
    user = instruction(final, "USER")
    assert user == ["moltbot"]
    words = [w for w, _ in final]
    assert words.index("USER") < words.index("CMD") and words.index("USER") > words.index("RUN")
    assert instruction(final, "EXPOSE") == ["18789"]
    assert instruction(final, "VOLUME") == ['["/data"]']
    env = " ".join(instruction(final, "ENV"))
    assert "MOLTBOT_HOME=/data" in env
    health = instruction(final, "HEALTHCHECK")[0]
    assert "--interval=" in health and "http://127.0.0.1:18789/healthz" in health
    assert json.loads(instruction(final, "CMD")[0]) == ["moltbot", "gateway", "start",
                                                        "--foreground"]
    # Everything copied from the context exists there, and the .dockerignore lets it through.
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    for args in instruction(build, "COPY") + instruction(final, "COPY"):
        if args.startswith("--from"):
            continue
        for source in args.split()[:-1]:
            assert (ROOT / source).exists(), source
            assert f"!{source}" in ignore or f"!{source}/" in ignore, source


def test_the_image_installs_the_locked_versions_then_moltbot_alone() -> None:
    """The runtime lock, hash-checked, in a layer of its own (rebuilt only when the lock
    changes); then Moltbot with --no-deps, so nothing is resolved again, and `pip check`."""
    build = dockerfile_stages()[0]
    lock = "installers/lock/runtime.txt"
    assert build[2] == ("COPY", f"{lock} {lock}")   # after FROM and WORKDIR, before the source
    locked, moltbot = (" ".join(run.split()) for run in instruction(build, "RUN"))
    assert locked.startswith("python -m venv /opt/moltbot && /opt/moltbot/bin/pip install ")
    assert locked.endswith(f"--require-hashes -r {lock}")
    assert moltbot.endswith("--no-deps . && /opt/moltbot/bin/pip check")
    words = [w for w, _ in build]
    assert words.index("RUN") < words.index("COPY", 3)
    assert (ROOT / lock).read_text(encoding="utf-8").startswith(
        "# This file was autogenerated by uv via the following command:")


def test_compose_and_image_use_one_health_check() -> None:
    final = dockerfile_stages()[1]
    image_check = json.loads(instruction(final, "HEALTHCHECK")[0].split("CMD", 1)[1])
    assert compose()["services"]["gateway"]["healthcheck"]["test"] == ["CMD", *image_check]


@pytest.fixture
def container_layout(tmp_path: Path) -> Path:
    """/opt/moltbot as the Dockerfile lays it out: bin/moltbot-entrypoint, docker-config.yaml."""
    opt = tmp_path / "opt" / "moltbot"
    (opt / "bin").mkdir(parents=True)
    shutil.copy2(DOCKER / "entrypoint.sh", opt / "bin" / "moltbot-entrypoint")
    shutil.copy2(DOCKER / "config.yaml", opt / "docker-config.yaml")
    return opt


def test_the_container_config_needs_its_token(container_layout: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = container_layout / "docker-config.yaml"
    monkeypatch.delenv("MOLTBOT_TOKEN", raising=False)
    monkeypatch.delenv("MOLTBOT_PUBLIC_HOST", raising=False)
    with pytest.raises(ConfigError) as missing:
        load_config(path)
    assert "auth.tokens[0]: environment variable MOLTBOT_TOKEN is not set" in str(missing.value)
    assert "environment variable MOLTBOT_PUBLIC_HOST is not set" in str(missing.value)
    monkeypatch.setenv("MOLTBOT_TOKEN", "mb_test-token-from-the-environment")
    monkeypatch.setenv("MOLTBOT_PUBLIC_HOST", "assistant.example.com")
    config = load_config(path)
    assert config.gateway.allowed_hosts == ["assistant.example.com"]
    assert config.gateway.host == "0.0.0.0" and config.gateway.port == 18789
    assert config.auth.tokens == ["mb_test-token-from-the-environment"]
    assert bind_problem(config.gateway.host, config) is None
    assert config.models["llama2"].endpoint == "http://ollama:11434"
    # The gateway believes X-Forwarded-For from nginx's fixed address on the compose network.
    spec = compose()
    nginx_ip = spec["services"]["nginx"]["networks"]["default"]["ipv4_address"]
    assert [str(n) for n in config.auth.trusted_proxies] == [f"{nginx_ip}/32"]
    subnet = spec["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(nginx_ip) in ipaddress.ip_network(subnet)


def test_entrypoint_seeds_the_workspace_and_the_gateway_takes_the_env_token(
        container_layout: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    token = "mb_container-token-0123456789abcdefghij"
    env = {**os.environ, "MOLTBOT_HOME": str(data), "MOLTBOT_TOKEN": token,
           "MOLTBOT_PUBLIC_HOST": "assistant.example.com"}
    gw = GatewayProcess(data, port)
    gw.out_path = tmp_path / "container.out"
    # What the container runs, with the listen address moved to loopback on a free port.
    argv = [str(container_layout / "bin" / "moltbot-entrypoint"), sys.executable, "-m",
            "gateway", "gateway", "start", "--foreground", "--host", "127.0.0.1",
            "--port", str(port)]
    with open(gw.out_path, "ab") as out:
        gw.proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=out,
                                   stdin=subprocess.DEVNULL)
    try:
        gw.wait_healthy()
        assert f"created {data}/config.yaml" in gw.output()
        seeded = (data / "config.yaml").read_text(encoding="utf-8")
        assert seeded == (DOCKER / "config.yaml").read_text(encoding="utf-8")
        assert (data / "skills" / "auto_reply.py").exists()
        skills = f"{gw.url}/api/v1/skills"
        assert httpx.get(skills, timeout=5).status_code == 401
        by_name = {name: httpx.get(f"{gw.url}/healthz", headers={"Host": name}, timeout=5)
                   for name in ("assistant.example.com", "rebound.example.net")}
        assert by_name["assistant.example.com"].status_code == 200
        assert by_name["rebound.example.net"].status_code == 403
        ok = httpx.get(skills, headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert ok.status_code == 200 and ok.json()["config_error"] is None

        # The compose file's health check, pointed at this gateway's port, passes.
        check = compose()["services"]["gateway"]["healthcheck"]["test"]
        code = check[3].replace("18789", str(port))
        assert subprocess.run([sys.executable, "-c", code], timeout=30).returncode == 0
    finally:
        assert gw.stop() == 0
    down = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert down.returncode != 0

    # A second start keeps the owner's edited config.
    (data / "config.yaml").write_text(seeded + "\nlogs:\n  level: debug\n", encoding="utf-8")
    again = subprocess.run([str(container_layout / "bin" / "moltbot-entrypoint"), "true"],
                           env=env, capture_output=True, text=True, timeout=30)
    assert again.returncode == 0 and "created" not in again.stdout
    assert (data / "config.yaml").read_text(encoding="utf-8").endswith("level: debug\n")


# ----------------------------------------------------------------------------- nginx


def make_certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "fullchain.pem", folder / "privkey.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture
def nginx_in_front(gateway: GatewayProcess, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Real nginx running installers/nginx/moltbot.conf in front of the real gateway."""
    if not (shutil.which("nginx") and shutil.which("openssl")):
        pytest.skip("nginx and openssl are needed (installers/test.sh installs them as root)")
    prefix = tmp_path / "nginx"
    (prefix / "logs").mkdir(parents=True)
    cert, key = make_certificate(prefix)
    https, http = free_port(), free_port()
    conf = NGINX_CONF.read_text(encoding="utf-8")
    conf = conf.replace("server gateway:18789;", f"server 127.0.0.1:{gateway.port};")
    conf = conf.replace("listen 443 ssl;", f"listen 127.0.0.1:{https} ssl;")
    conf = conf.replace("listen 80;", f"listen 127.0.0.1:{http};")
    conf = re.sub(r"\n\s*listen \[::\]:\d+( ssl)?;", "", conf)   # no IPv6 needed here
    conf = conf.replace("/etc/nginx/tls/fullchain.pem", str(cert))
    conf = conf.replace("/etc/nginx/tls/privkey.pem", str(key))
    (prefix / "moltbot.conf").write_text(conf, encoding="utf-8")
    user = "user root;\n" if os.geteuid() == 0 else ""   # workers write the temp dirs below
    (prefix / "nginx.conf").write_text(
        f"{user}worker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/logs/error.log;"
        f"\nevents {{ worker_connections 64; }}\nhttp {{\n  access_log off;\n"
        f"  client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n"
        f"  include {prefix}/moltbot.conf;\n}}\n", encoding="utf-8")
    base = ["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", "stderr"]
    tested = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=30)
    assert tested.returncode == 0 and "[warn]" not in tested.stderr, tested.stderr
    proc = subprocess.Popen([*base, "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    context = ssl.create_default_context(cafile=str(cert))
    try:
        deadline_url = f"https://127.0.0.1:{https}/healthz"
        _wait_for(lambda: httpx.get(deadline_url, verify=context, timeout=2).status_code == 200)
        yield {"https": https, "http": http, "ssl": context, "cert": cert}
    finally:
        proc.send_signal(signal.SIGQUIT)   # nginx's graceful stop
        proc.wait(15)
        assert proc.stderr is not None
        problems = proc.stderr.read().decode()
        proc.stderr.close()
        assert "[emerg]" not in problems and "[crit]" not in problems, problems


def _wait_for(check: Any, deadline_s: float = 15.0) -> None:
    from tests.test_skills_gateway import wait_until

    def attempt() -> bool:
        try:
            return bool(check())
        except (httpx.HTTPError, OSError):
            return False

    wait_until(attempt, deadline_s)


def test_nginx_proxies_https_and_websockets(gateway: GatewayProcess,
                                            nginx_in_front: dict[str, Any]) -> None:
    https, context = nginx_in_front["https"], nginx_in_front["ssl"]
    health = httpx.get(f"https://127.0.0.1:{https}/healthz", verify=context, timeout=5)
    assert health.json()["status"] == "ok" and health.headers["strict-transport-security"]
    plain = httpx.get(f"http://127.0.0.1:{nginx_in_front['http']}/chat?x=1", timeout=5)
    assert plain.status_code == 301
    assert plain.headers["location"] == "https://127.0.0.1/chat?x=1"
    reply = httpx.post(f"https://127.0.0.1:{https}/api/v1/messages", verify=context, timeout=30,
                       headers=gateway.headers, json={"text": "through nginx", "chat": "n"})
    assert reply.json()["reply"] == "echo: through nginx"
    too_big = httpx.post(f"https://127.0.0.1:{https}/api/v1/messages", verify=context,
                         timeout=30, headers=gateway.headers, content=b"x" * (2 << 20))
    assert too_big.status_code == 413

    ws = websocket.create_connection(
        f"wss://127.0.0.1:{https}/ws", timeout=30, sslopt={"ca_certs": str(nginx_in_front["cert"])},
        header=[f"Authorization: Bearer {gateway.token}"])
    try:
        ws.send(json.dumps({"type": "message", "id": "n1", "text": "stream via nginx",
                            "chat": "n"}))
        frames = []
        while not frames or frames[-1]["type"] not in ("reply", "error"):
            frames.append(json.loads(ws.recv()))
    finally:
        ws.close()
    deltas = [f["text"] for f in frames if f["type"] == "reply.delta"]
    assert len(deltas) >= 2 and frames[-1]["text"] == "echo: stream via nginx"


def test_nginx_refuses_tls_1_1_and_speaks_1_2_or_newer(nginx_in_front: dict[str, Any]) -> None:
    """openssl's own client offers exactly one version (SECLEVEL=0 so that it may offer 1.1
    at all): nginx must refuse 1.1 with a protocol-version alert and accept 1.2."""
    def handshake(version: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{nginx_in_front['https']}",
             f"-{version}", "-cipher", "DEFAULT:@SECLEVEL=0", "-CAfile",
             str(nginx_in_front["cert"]), "-servername", "127.0.0.1"],
            input="", capture_output=True, text=True, timeout=30)

    old = handshake("tls1_1")
    assert old.returncode != 0 and "protocol version" in (old.stdout + old.stderr).lower()
    modern = handshake("tls1_2")
    assert modern.returncode == 0 and "TLSv1.2" in modern.stdout


# ----------------------------------------------------------------------------- mosquitto


def test_mosquitto_config_runs_and_answers_the_compose_health_check(tmp_path: Path) -> None:
    if not (shutil.which("mosquitto") and shutil.which("mosquitto_sub")):
        pytest.skip("mosquitto and mosquitto-clients are needed (installers/test.sh installs "
                    "them as root)")
    port = free_port()
    conf = (DOCKER / "mosquitto.conf").read_text(encoding="utf-8")
    conf = conf.replace("listener 1883", f"listener {port} 127.0.0.1")
    conf = conf.replace("/mosquitto/data/", f"{tmp_path}/")
    if os.geteuid() == 0:
        conf += "user root\n"   # as root it would switch to the mosquitto user: keep tmp_path ours
    (tmp_path / "mosquitto.conf").write_text(conf, encoding="utf-8")
    broker = subprocess.Popen(["mosquitto", "-c", str(tmp_path / "mosquitto.conf")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        check = compose()["services"]["mosquitto"]["healthcheck"]["test"][1:]
        check = [arg.replace("$$", "$") for arg in check] + ["-p", str(port)]
        _wait_for(lambda: subprocess.run(check, capture_output=True, timeout=10).returncode == 0)
    finally:
        broker.terminate()
        broker.wait(10)
        assert broker.stdout is not None
        log = broker.stdout.read().decode()
        broker.stdout.close()
    assert "running" in log and "Error" not in log, log
