"""The browser pages the gateway serves (HTML, scripts, styles); no Python logic lives here."""
