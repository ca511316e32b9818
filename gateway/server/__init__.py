"""The gateway process: `python -m gateway.server` (what `moltbot gateway start` runs).

`main` patches with gevent first and serves; `app` is the composition root that builds every
part and wires them; `httpserver` is gevent's WSGI server with the connection rules (limits,
time-outs, one descriptor per WebSocket); `faults` holds the fault switches tests turn on.
"""
