"""The HTTP door every web entry shares (channels and console alike): `Host` and `Origin`
checks before any route (`door`), the caller's credential from a header or the login cookie
(`credentials`), and error bodies with the HTTP status of each error code (`errors`).
"""
