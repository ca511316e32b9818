"""Channel adapters: where messages come from and replies go back to.

The contract is `base.Channel` (start, stop, status, configure; `PushChannel.deliver` for
channels that send replies later, on their own connection). A channel turns what its platform
sends into a `Message` and hands it, with the caller's credential, to the pipeline's `handle`,
which runs the guard chain and always returns a `Reply`; the channel maps the reply (an error
*code*, never an HTTP status) to its own form. The channels are built from `table.CHANNELS`,
keyed by the `channels:` config section, and started, stopped and reconfigured by hot reload.
"""
