"""The suite never depends on the default port: the CLI tests pass while 18789 is held.

The README's two commands run in that order: install.sh starts a gateway on 127.0.0.1:18789,
then test.sh runs the suite. So this test holds the port with a listening socket (the worst
case for `doctor`: a program that is not ours) and runs the CLI tests, doctor and start paths
included, in a child pytest.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.conftest import ROOT

DEFAULT_PORT = 18789


def test_cli_tests_pass_while_the_default_port_is_held() -> None:
    with socket.socket() as holder:
        try:
            holder.bind(("127.0.0.1", DEFAULT_PORT))
        except OSError as e:
            pytest.skip(f"127.0.0.1:{DEFAULT_PORT} is already in use by another program ({e}); "
                        f"this test must hold the port itself to show the suite ignores it")
        holder.listen()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "tests/test_cli.py", "tests/test_doctor.py"],
            cwd=ROOT, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]
