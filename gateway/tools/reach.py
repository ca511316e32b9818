"""What a tool may reach: `tools.allowed_hosts`, checked by name (the http tool) and also by
address (the browser, whose pages ask for whatever they like).

Names: an exact entry ("api.x.com"), a "*.x.com" entry (sub-domains only, not x.com itself)
or "*" (every host, written out); an empty list refuses everything.
Addresses: a page may point a sub-request or a redirect at any name, and a listed wildcard
name can resolve to the machine itself or the local network. So an address that is loopback,
private, link-local, multicast, reserved or unspecified is refused unless the host was listed
by its exact name ("localhost", "127.0.0.1", "nas.home"): a wildcard never reaches them.
Stdlib only: the browser's child process imports this without the gateway.
"""

from __future__ import annotations

import ipaddress

HOSTS_FIX = "add the host (or a '*.domain' entry) to tools.allowed_hosts in config.yaml"


class Reach:
    """The parsed allowlist; `refusal` and `address_refusal` say why not, or None."""

    def __init__(self, allowed_hosts: list[str]) -> None:
        for entry in allowed_hosts:
            rest = entry[2:] if isinstance(entry, str) and entry.startswith("*.") else entry
            if entry != "*" and (
                not isinstance(rest, str) or not rest or any(c in rest for c in "*/@ ?#")
            ):
                raise ValueError(
                    f"tools.allowed_hosts: {entry!r} is not a host name; write e.g. "
                    "'api.example.com', '*.example.com' or '*' (every host)"
                )
        self.allowed_hosts = [h.lower().rstrip(".") for h in allowed_hosts]

    def allows(self, host: str) -> bool:
        """True if `host` (lower case, no trailing dot) matches an allowlist entry."""
        for entry in self.allowed_hosts:
            if entry == "*" or entry == host:
                return True
            if entry.startswith("*.") and host.endswith(entry[1:]):
                return True
        return False

    def refusal(self, host: str) -> str | None:
        """Why `host` may not be reached by name, or None."""
        host = normal_host(host)
        if self.allows(host):
            return None
        listed = ", ".join(self.allowed_hosts) or "empty, so every host is refused"
        return f"host {host!r} is not in tools.allowed_hosts ({listed}); {HOSTS_FIX} to allow it"

    def address_refusal(self, host: str, addresses: list[str]) -> str | None:
        """Why `host`, resolved to `addresses`, may not be reached, or None. A host listed by
        its exact name may be anywhere; any other must resolve to public addresses only."""
        host = normal_host(host)
        if host in self.allowed_hosts:
            return None
        for address in addresses:
            kind = local_kind(address)
            if kind:
                return (f"{host!r} resolves to {address}, a {kind} address, which is "
                        f"reached only when tools.allowed_hosts lists {host!r} by its exact "
                        "name (a wildcard never does)")
        return None


def normal_host(host: str) -> str:
    return host.lower().rstrip(".").strip("[]")


def local_kind(address: str) -> str:
    """'loopback', 'private', ... for an address that is not on the public internet; ''."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return "unparsable"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return ""
