"""The console channel: the browser pages and the admin API behind one switch
(`channels.console.enabled`). Its entries pass the guard chain as channel `console`."""

from __future__ import annotations

from flask.typing import ResponseReturnValue

from gateway.api.admin import build_admin
from gateway.api.console_assets import build_console_assets
from gateway.api.console_config import build_console_config
from gateway.api.console_files import build_console_files
from gateway.api.console_logs import build_console_logs
from gateway.api.console_mcp import build_console_mcp
from gateway.api.console_sessions import build_console_sessions
from gateway.api.console_usage import build_console_usage
from gateway.api.login_codes import build_login_codes
from gateway.api.outbox import build_console_outbox
from gateway.api.pages import build_pages
from gateway.channels.base import ChannelOptions, Services, WebChannel
from gateway.web.errors import error_response


class ConsoleChannel(WebChannel):
    name = "console"

    def __init__(self, services: Services, options: ChannelOptions) -> None:
        super().__init__(services, options)
        codes, redeem_code = build_login_codes(services.entry, services.store, self.name)
        pages = build_pages(services, self.name, redeem_code)
        admin = build_admin(services.entry, services.reloader, services.store, self.name,
                            services.channel_listing, services.outbox.rows.for_message)
        for blueprint in (pages, admin, codes, build_console_assets(services.webui),
                          build_console_usage(services, self.name),
                          build_console_logs(services, services.sock, self.name),
                          build_console_sessions(services, self.name),
                          build_console_config(services, self.name),
                          build_console_files(services, self.name),
                          build_console_outbox(services, self.name),
                          build_console_mcp(services, self.name)):
            # registered first, so a switched-off console answers before any other check
            blueprint.before_request_funcs.setdefault(None, []).insert(0, self._open)
            services.app.register_blueprint(blueprint)

    def _open(self) -> ResponseReturnValue | None:
        if self.running:
            return None
        return error_response("unavailable", "The console is switched off "
                              "(channels.console.enabled in config.yaml).")
