"""Moltbot gateway: one entry for every chat channel, in front of your own model.

Messages flow one way: channel -> guards -> session -> router -> skill or model -> reply ->
channel. `gateway.server.app` is the composition root that builds every part.
"""

__version__ = "0.1.0"
DISTRIBUTION = "moltbot-gateway"
"""Our name on disk (pip, wheels, metadata). Never tell anyone to `pip install` a bare name from
the public index: "moltbot" there is someone else's project."""
