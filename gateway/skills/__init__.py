"""Skills: loading the user's skills and running them, isolated from the gateway's event loop."""
