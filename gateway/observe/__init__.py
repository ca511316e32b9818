"""Seeing what the gateway does: rotated log files (`logs`) with secrets masked (`redact`),
the audit log (`audit`), Prometheus metrics and the per-second window (`metrics`, `window`),
alert rules and their senders (`alerting/`), the watched event loop (`loopwatch`), systemd's
notify protocol (`sdnotify`), machine resources (`resources`) and `moltbot top` (`top`).
"""
