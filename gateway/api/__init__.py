"""The console and the gateway's own HTTP surface: the console channel (`console`) with its
pages and APIs (`console_*`, `admin`, `login_codes`, `pages`), `/healthz` and `/metrics`.

Messages arrive through `gateway.channels`, never here; the door (`gateway.web`) comes first.
"""
