"""Guards: every entry into the gateway passes one chain of them, in one fixed order.

address allowlist -> rate limit (per address) -> authentication -> shared limits (global,
per chat-platform sender) -> stranger policy

The shared budgets come after authentication so that nobody without a credential can spend
them for others.

Each guard is a small class with one job that looks at a `Caller` (who is knocking, from
where, with what credential) and answers allow, refuse or challenge. The chain is closed by
default: a caller that no guard identified is refused. Channels never check credentials
themselves; they describe the caller and ask the chain (`gateway.guards.chain`).
"""
