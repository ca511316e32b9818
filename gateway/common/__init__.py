"""Common ground every floor may stand on, importing nothing else of the gateway: the pieces
config.yaml's sections are made of (`options`, `networks`), safe YAML reading, the workspace's
folders, the OS keyring, private file modes and the one child-process runner.
"""
