"""MCP tool servers without a gateway: names the model and skills use, and the checks of
`mcp_servers:` entries (each refused with its key and what to fix)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gateway.common.options import ConfigError
from gateway.config import parse_config
from gateway.mcp.names import function_name, split_skill_name
from gateway.observe.audit import config_changes
from tests.conftest import run_cli, write_config

FUNCTION = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what function-calling APIs accept


def test_function_names_are_safe_unique_and_stable() -> None:
    assert function_name("clock", "now") == "clock__now"
    dotted, underscored = function_name("gh", "repo.list"), function_name("gh", "repo_list")
    assert underscored == "gh__repo_list" and dotted != underscored
    assert dotted == function_name("gh", "repo.list")
    long = function_name("server", "t" * 200)
    for name in (dotted, long, function_name("x", "名字/with space")):
        assert FUNCTION.match(name), name
    assert function_name("server", "t" * 200 + "a") != long


def test_skill_names_split_at_the_first_dot() -> None:
    assert split_skill_name("clock.now") == ("clock", "now")
    assert split_skill_name("gh.repo.list") == ("gh", "repo.list")
    assert split_skill_name("files") is None
    assert split_skill_name(".now") is None and split_skill_name("clock.") is None


def problems(servers: object) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config({"mcp_servers": servers})
    return "\n".join(e.value.problems)


def test_good_entries_pass_with_defaults() -> None:
    config = parse_config({"mcp_servers": {
        "clock": {"command": ["python3", "tools/clock_server.py"], "offer_to_model": ["now"]},
        "web-search": {"url": "https://tools.example.com/mcp", "timeout": "2m",
                       "headers": {"Authorization": "Bearer x"}}}})
    assert config.mcp_servers["clock"].timeout == 30.0
    assert config.mcp_servers["web-search"].timeout == 120.0
    assert config.mcp_servers["web-search"].offer_to_model == []


@pytest.mark.parametrize(("servers", "expected"), [
    ({"clock": {}}, "mcp_servers.clock: give either command"),
    ({"clock": {"command": ["x"], "url": "http://a/mcp"}}, "not both and not neither"),
    ({"clock": {"command": []}}, "command must be a list such as"),
    ({"clock": {"command": "python3 x.py"}}, "mcp_servers.clock.command"),
    ({"clock": {"url": "ftp://host/mcp"}}, "url must be http:// or https://"),
    ({"clock": {"command": ["x"], "headers": {"A": "b"}}}, "headers go to a url"),
    ({"clock": {"url": "http://a/mcp", "env": {"A": "b"}}}, "env goes to a command"),
    ({"clock": {"command": ["x"], "timeout": 0}}, "mcp_servers.clock.timeout"),
    ({"clock": {"command": ["x"], "offer": ["now"]}}, "mcp_servers.clock.offer: unknown key"),
    ({"my__clock": {"command": ["x"]}}, "'my__clock' cannot name a server"),
    ({"my.clock": {"command": ["x"]}}, "'my.clock' cannot name a server"),
    ({"c" * 31: {"command": ["x"]}}, "cannot name a server: up to 30"),
])
def test_bad_entries_name_the_key_and_the_fix(servers: object, expected: str) -> None:
    assert expected in problems(servers)


def test_header_and_env_values_are_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOCK_TOKEN", "s3cret-value-of-the-clock")
    before = parse_config({"mcp_servers": {"c": {"url": "http://a/mcp"}}})
    after = parse_config({"mcp_servers": {"c": {
        "url": "http://a/mcp", "headers": {"Authorization": "Bearer ${CLOCK_TOKEN}"}}}})
    changes = config_changes(before.model_dump(), after.model_dump())
    assert changes == {"mcp_servers.c.headers.Authorization": ["***", "***"]}
    refused = problems({"c": {"url": "http://a/mcp",
                              "headers": {"Authorization": ["${CLOCK_TOKEN}"]}}})
    assert "s3cret" not in refused and "mcp_servers.c.headers.Authorization" in refused


def test_mcp_list_without_a_running_gateway(tmp_path: Path) -> None:
    home = tmp_path / "ai-gateway"
    write_config(home, {"mcp_servers": {"clock": {"command": ["python3", "clock.py"]}}})
    listed = run_cli(home, "mcp", "list")
    assert listed.returncode == 0, listed.stderr
    assert "clock          stdio stopped (the gateway is not running)" in listed.stdout
    as_json = json.loads(run_cli(home, "mcp", "list", "--json").stdout)
    assert as_json["servers"][0]["state"] == "stopped"
    write_config(home, {})
    assert "No MCP servers: add them under mcp_servers:" in run_cli(home, "mcp", "list").stdout
