"""MCP tool servers (`mcp_servers:`): their options, the one host process that runs their
clients (`host`), the gateway's supervision of each (`supervisor`), and their tools as the
model and skills call them (`tools`, `names`)."""
