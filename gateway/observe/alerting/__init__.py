"""Alerts (the guide's section 5.2) and the error log's email (section 5.1).

Rule: nothing here runs on the message path. The evaluator reads the metrics window once a
second and the senders deliver from their own workers, so a slow or failing mail server or
robot never delays a reply. `gateway.config` imports `config` from here, so this package's
`__init__` imports nothing.
"""
