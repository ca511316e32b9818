"""The gateway's own HTTP surface: health, login, error shapes and the chat page.

Message ingress over HTTP and WebSocket lives in `gateway.channels`, not here.
"""
