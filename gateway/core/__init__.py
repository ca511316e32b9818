"""The message core: one message's way from admission to reply, and the values it travels as.

`message` holds the values (`Message`, `Reply`, `Trace`, `Attachment`); `intake` is where
every channel's payload becomes a `Message` (its rules in `fields`; a bad payload meets the
guard chain first) and its `Reply`; `store` keeps them before anything answers; `pipeline`
runs guard -> store -> chat order -> session -> route -> execute -> finish with one
`turn.Turn` per message; `router` decides (command, skill or model), `execute` carries the
decision out, `chat` talks to the model with knowledge (`grounding`) and history
(`context`, `sessions`). `settings` is the one snapshot of config.yaml a message reads;
`state` the per-process interfaces; `entry` the pipeline as transports see it. A message's
files: `inbox` keeps them (in the workspace), `files_for_model` is what the model is given of
them, `skill_files` what crosses the skill boundary either way. Nothing here
knows a transport (HTTP, WebSocket, a platform): channels sit above and map a `Reply` to theirs.
"""
