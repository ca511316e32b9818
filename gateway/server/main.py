"""The gateway process: `python -m gateway.server` (what `moltbot gateway start` runs).

`queue=False` as measured when watchdog still ran in this process (it saw no file events with
gevent's queue); watchdog now runs in its own process (`gateway.live.watcher`), and no library here
has been measured with a patched `queue` since. Libraries that start threads or block in C stay
off this loop: ARCHITECTURE.md's thread rule says where each runs. `observe.loopwatch` reports
any block of the loop with its stack. The port opens before the slow half of the start
(skills, indexes, channels: `server.starting`), behind a gate only /healthz passes until that
half is done. SIGTERM or SIGINT stops it gracefully: stop accepting,
let in-flight replies finish (bounded by `gateway.shutdown_timeout`), close the rest, remove
the pid file.
"""

from gevent import monkey

monkey.patch_all(queue=False)  # first: before anything imports socket, ssl or threading

import argparse
import errno
import logging
import os
import resource
import signal
import sys

import gevent
from gevent.event import Event

from gateway import __version__
from gateway.common.options import ConfigError
from gateway.common.private import private_umask, tighten
from gateway.common.secrets import lookup_secret
from gateway.common.workspace import default_workspace, ensure_workspace
from gateway.config import bind_problem, load_config
from gateway.observe.logs import ACCESS_LOGGER, setup_logging
from gateway.observe.loopwatch import LoopWatch, max_blocking_time
from gateway.observe.sdnotify import SystemdNotifier
from gateway.server.app import build_gateway
from gateway.server.faults import install_faults
from gateway.server.httpserver import GatewayServer, listen
from gateway.server.starting import Starting

log = logging.getLogger("gateway.server")


def raise_open_file_limit() -> int:
    """Each WebSocket holds a descriptor: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.server")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--dev", action="store_true", help="debug logs on the terminal")
    parser.add_argument("--foreground", action="store_true", help="info logs on the terminal")
    args = parser.parse_args(argv)

    private_umask()
    workspace = default_workspace()
    ensure_workspace(workspace)
    tighten(workspace.data, workspace.config_path, workspace.root / "memory")  # + the owner's facts
    try:
        config = load_config(workspace.config_path, lookup_secret)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    host = args.host or config.gateway.host
    port = args.port or config.gateway.port
    problem = bind_problem(host, config)
    if problem:
        print(problem, file=sys.stderr)
        return 2

    setup_logging(workspace.logs, "debug" if args.dev else config.logs.level,
                  terminal=args.dev or args.foreground, max_bytes=config.logs.max_bytes,
                  backups=config.logs.backup_count)
    try:
        listener = listen(host, port)
    except OSError as e:
        why = "is in use by another program" if e.errno == errno.EADDRINUSE else f"failed: {e}"
        print(f"Port {port} on {host} {why}. Stop that program or pick another port with "
              f"--port.", file=sys.stderr)
        return 1

    # Watched from here on: a block while building or starting (a library's thread stuck in
    # C) is reported with its stack, not a silent hang.
    watch = LoopWatch(workspace.loop_report_path(port), max_blocking_time())
    watch.start()
    starting = Starting()  # every request but /healthz waits until gateway.start is done
    try:
        gateway = build_gateway(workspace, config, starting)
    except ConfigError as e:
        listener.close()
        print(e, file=sys.stderr)
        return 2
    watch.on_block = gateway.process.metrics.loop_blocked
    server = GatewayServer(listener, gateway.app,
                           max_connections=config.gateway.max_connections,
                           keepalive_timeout=config.gateway.keepalive_timeout,
                           request_timeout=config.gateway.request_timeout,
                           max_per_address=config.gateway.max_connections_per_ip,
                           # not counted per address: the proxies config.yaml trusts (reloadable)
                           proxies=lambda: gateway.pipeline.settings.trusted_proxies,
                           log=logging.getLogger(ACCESS_LOGGER),
                           error_log=logging.getLogger("gateway.server.httpserver"))
    stopping = Event()
    gevent.signal_handler(signal.SIGTERM, stopping.set)
    gevent.signal_handler(signal.SIGINT, stopping.set)

    pid_path = workspace.pid_path(port)
    pid_path.write_text(str(os.getpid()), encoding="utf-8")
    limit = raise_open_file_limit()
    install_faults()
    server.start()
    watch.serving = True
    log.info("Moltbot %s listening on http://%s:%d (workspace %s, open files %d)",
             __version__, host, port, workspace.root, limit)
    systemd = SystemdNotifier()
    starting.run(gateway.start, started=systemd.ready, failed=stopping.set)
    try:
        stopping.wait()
        starting.stop()
        systemd.stopping()
        log.info("stopping: no new connections, finishing replies in flight")
        server.close()
        problems = gateway.stop(config.gateway.shutdown_timeout)
        server.stop(timeout=1)
        for p in problems:
            log.warning("shutdown: %s", p)
    finally:
        pid_path.unlink(missing_ok=True)
    log.info("stopped")
    return 1 if starting.failed else 0

