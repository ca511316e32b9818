"""Model backends: one call, chat messages in, text (streamed) out.

Each backend module maps its client library's errors onto two kinds: `EndpointDown` (try
another endpoint) and `ModelError` (the backend answered and said no: another endpoint would say
the same). `pool` spreads calls over a model's endpoints; `registry` holds the backend table.
"""
