"""The desktop tray app (pystray): start/stop the gateway, open the console and workspace."""
