"""`python -m gateway` is the `moltbot` command."""

from gateway.cli import main

main()
