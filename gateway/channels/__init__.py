"""Channel adapters: where messages come from and replies go back to.

The contract is `base.Channel` (start, stop, status, configure; `PushChannel.deliver` for
channels that send replies later, on their own connection). A channel is its transport only:
it turns what its platform sends into an `Arrival` (payload, credential, peer, files) and hands
it to the one intake (`gateway.core.intake`), which validates it, runs the guard chain (first,
when the payload is bad) and the pipeline, and always returns a `Reply`; the channel maps the
reply (an error *code*, never an HTTP status) to its own form. The channels are built from
`table.CHANNELS`, keyed by the `channels:` config section, and started, stopped and
reconfigured by hot reload.
"""
