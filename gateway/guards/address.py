"""Address allowlists: `console.allow_ips` for the console and its APIs (default: loopback
only) and `auth.allow_ips` for every other entry (default: any address; they still need a
credential). A refused address learns which key would let it in."""

from __future__ import annotations

from gateway.common.networks import Network, in_networks
from gateway.guards.chain import Allow, Caller, Refuse, Verdict

CONSOLE = "console"


class AddressAllowlist:
    name = "address"

    def __init__(self, console: tuple[Network, ...], others: tuple[Network, ...]) -> None:
        self.console = console
        self.others = others

    def check(self, caller: Caller, principal: str) -> Verdict:
        console = caller.channel == CONSOLE
        if in_networks(caller.peer, self.console if console else self.others):
            return Allow()
        key = "console.allow_ips" if console else "auth.allow_ips"
        return Refuse("forbidden", f"Your address {caller.peer or '(unknown)'} may not use "
                      f"this entry; the owner can add it to {key} in config.yaml.")
