"""`moltbot`: the command line, one module per verb group (`run`, `inspect`, `access`); this
module puts them under one command."""

from __future__ import annotations

import click

from gateway import __version__
from gateway.cli import access, inspect, run, schedules
from gateway.common.private import private_umask


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="moltbot")
def main() -> None:
    """Moltbot: your private AI assistant gateway."""
    private_umask()  # the workspace, the store and tokens it creates are the owner's alone


for command in (run.gateway, run.dashboard, run.tray, inspect.trace, inspect.skills,
                inspect.logs, inspect.doctor, inspect.channels, inspect.top, access.secret,
                access.token, access.pairing, schedules.schedules, inspect.mcp):
    main.add_command(command)
