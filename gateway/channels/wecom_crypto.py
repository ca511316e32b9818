"""WeCom's callback encryption (加解密方案), through wechatpy's `WeChatCrypto`: the signature is
checked before anything is decrypted, and the receive id must be the corp id.

Its own module because importing wechatpy costs ~0.3 s (it brings its API clients and
`requests`): the WeCom channel imports this only when its app starts, so reading config.yaml
(every CLI command) does not pay for it.
"""

from __future__ import annotations

from typing import Any

from wechatpy.enterprise.crypto import WeChatCrypto  # type: ignore[import-untyped]
from wechatpy.enterprise.exceptions import InvalidCorpIdException  # type: ignore[import-untyped]
from wechatpy.exceptions import InvalidSignatureException  # type: ignore[import-untyped]


class CallbackRefused(Exception):
    """A callback this app will not read: `code` is WXBizMsgCrypt's (-40001 signature, -40005
    receive id, -40007 decryption), `said` what went wrong."""

    def __init__(self, code: int, said: str) -> None:
        super().__init__(f"{code} {said}")
        self.code = code
        self.said = said


class CallbackCrypto:
    def __init__(self, token: str, encoding_aes_key: str, corp_id: str) -> None:
        self.crypto = WeChatCrypto(token, encoding_aes_key, corp_id)

    def echo(self, signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """The URL check: the decrypted echostr."""
        return self._open(self.crypto.check_signature, echostr, signature, timestamp, nonce)

    def message(self, outer: dict[str, Any], signature: str, timestamp: str,
                nonce: str) -> str:
        """A message callback's XML (`outer` is its parsed `<xml>`): the decrypted XML."""
        return self._open(self.crypto.decrypt_message, outer, signature, timestamp, nonce)

    @staticmethod
    def _open(decrypt: Any, given: Any, signature: str, timestamp: str, nonce: str) -> str:
        # wechatpy's argument order: (msg, signature, timestamp, nonce), except check_signature
        try:
            if isinstance(given, str):
                return str(decrypt(signature, timestamp, nonce, given))
            return str(decrypt(given, signature, timestamp, nonce))
        except InvalidSignatureException:
            raise CallbackRefused(-40001, "signature mismatch") from None
        except InvalidCorpIdException:
            raise CallbackRefused(-40005, "the receive id is not channels.wecom.corp_id") \
                from None
        except Exception as e:  # wechatpy raises what the cipher and unpacking raise
            raise CallbackRefused(-40007, f"{type(e).__name__} decrypting") from None
