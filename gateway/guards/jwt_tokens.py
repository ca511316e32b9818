"""JWTs signed with `auth.jwt_secret` (the guide's key): HS256 only, `exp` required.

`alg: none` and every other algorithm are refused (PyJWT checks the header against the one
algorithm we allow), so a forged or unsigned token proves nothing. The principal is
`jwt:<sub>`, which traces show.
"""

from __future__ import annotations

ALGORITHM = "HS256"


class JwtTokens:
    name = "jwt"

    def __init__(self, secret: str, leeway: float = 5.0) -> None:
        self.secret = secret
        self.leeway = leeway
        import jwt  # here, not at the top: ~70 ms (PyJWT, cryptography), for jwt_secret only

        self._jwt = jwt

    def identify(self, credential: str, channel: str) -> str | None:
        if credential.count(".") != 2:
            return None  # not a JWT: let the other sources answer, without a decode attempt
        try:
            claims = self._jwt.decode(credential, self.secret, algorithms=[ALGORITHM],
                                      options={"require": ["exp"]}, leeway=self.leeway)
        except self._jwt.PyJWTError:
            return None
        subject = claims.get("sub")
        return f"jwt:{subject}" if isinstance(subject, str) and subject else "jwt:anonymous"
