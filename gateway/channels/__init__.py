"""Channel adapters: where messages come from and replies go back to.

The contract (`base.Channel`): `start()` (safe to call again after a drop), `stop()` (release
everything), `deliver(reply)` (send one reply back to where its message came from). An adapter
turns what its platform sends into a `Message` and hands it to the one `submit` callable it was
given; it never reaches into the pipeline. HTTP and WebSocket ride on the gateway's own web
server; MQTT and the chat platforms implement the same contract with their own connections.
"""
