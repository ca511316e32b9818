"""The console channel: the browser pages and the admin API behind one switch
(`channels.console.enabled`). Its entries pass the guard chain as channel `console`."""

from __future__ import annotations

from flask.typing import ResponseReturnValue

from gateway.api.admin import build_admin
from gateway.api.errors import error_response
from gateway.api.login_codes import build_login_codes
from gateway.api.pages import build_pages
from gateway.channels.base import ChannelOptions, Services, WebChannel


class ConsoleChannel(WebChannel):
    name = "console"

    def __init__(self, services: Services, options: ChannelOptions) -> None:
        super().__init__(services, options)
        codes, redeem_code = build_login_codes(services.entry, services.store, self.name)
        pages = build_pages(services.entry, services.webui, self.name, redeem_code)
        admin = build_admin(services.entry, services.reloader, services.store, self.name,
                            services.channels.listing)
        for blueprint in (pages, admin, codes):
            # registered first, so a switched-off console answers before any other check
            blueprint.before_request_funcs.setdefault(None, []).insert(0, self._open)
            services.app.register_blueprint(blueprint)

    def _open(self) -> ResponseReturnValue | None:
        if self.running:
            return None
        return error_response("unavailable", "The console is switched off "
                              "(channels.console.enabled in config.yaml).")
