"""The message core: one message's way from admission to reply, and the values it travels as.

`message` holds the values (`Message`, `Reply`, `Trace`); `store` keeps them before anything
answers; `pipeline` runs guard -> store -> chat order -> session -> route -> execute -> finish
with one `turn.Turn` per message; `router` decides (command, skill or model), `execute` carries
the decision out, `chat` talks to the model with knowledge (`grounding`) and history
(`context`, `sessions`). `settings` is the one snapshot of config.yaml a message reads;
`state` the per-process interfaces; `entry` the pipeline as transports see it. Nothing here
knows a transport (HTTP, WebSocket, a platform): channels sit above and map a `Reply` to theirs.
"""
