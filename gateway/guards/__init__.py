"""Guards: each looks at a `Message` and lets it pass or refuses it with a reason.

Closed by default: a message with no verified principal is refused. Channels verify credentials
at their door (a bearer token, a platform's signature) and name the principal on the message;
the chain's order is fixed once when the gateway is built.
"""
