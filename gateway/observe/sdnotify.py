"""systemd's notify protocol: READY when serving, WATCHDOG pings from the loop, STOPPING.

Under `install.sh --service` the unit is `Type=notify` with `WatchdogSec=`: systemd sets
`NOTIFY_SOCKET` and `WATCHDOG_USEC` and restarts the gateway when the pings stop. The pings come
from a greenlet on the event loop, so a loop stuck in C stops them, and systemd restarts a
gateway that no longer answers, not only one that exited. Outside systemd (no `NOTIFY_SOCKET`)
every call here does nothing. The protocol is one datagram per message on a Unix socket (a name
starting with "@" is in the abstract namespace), so no library is needed.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class SystemdNotifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        watchdog_pid = env.get("WATCHDOG_PID", "")
        usec = env.get("WATCHDOG_USEC", "")
        mine = not watchdog_pid or watchdog_pid == str(os.getpid())
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() and mine else 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, state: str) -> None:
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.sendto(state.encode(), self.address)
        except OSError as e:  # systemd went away: nothing to tell, nothing to stop for
            log.debug("systemd notify %r failed: %s", state, e)

    def ready(self) -> None:
        """Serving: tell systemd, and ping its watchdog from the loop (half its limit apart)."""
        self.send("READY=1")
        if self.watchdog_interval:
            import gevent

            gevent.spawn(self._ping)
            log.info("systemd watchdog: pinging every %.1fs", self.watchdog_interval)

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def _ping(self) -> None:
        import gevent

        while True:
            self.send("WATCHDOG=1")
            gevent.sleep(self.watchdog_interval)
