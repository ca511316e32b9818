"""The tray app (`moltbot tray`, `python -m desktop`): start, stop and open the gateway.

Rule: plain Python only. Never import gevent or `gateway.server` here; the gateway runs in its
own process, started and found through `gateway.ops.control`, and is watched over HTTP (/healthz).
pystray is imported only when the tray runs, because on Linux it connects to the display at
import time.
"""
