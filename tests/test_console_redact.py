"""`redact` skips a pattern when the text lacks the words it needs; it must still mask
exactly what running every pattern masks, whatever the case or the script of the text."""

from __future__ import annotations

import random

from gateway.observe.redact import _SECRETS, redact

SAMPLES = [
    "Authorization: Bearer abcdefgh12345678", "BEARER   xyzxyzxyz==", "use mb_abcdefghijklmnop1234",
    "https://user:pw@example.com/x", "FTP://a:b@host", "api_key=supersecret", "API-KEY: 'abcd1234'",
    "ToKeN=abcdef", "password: hunter22", "sEcReT=\"s3cr3t!\"", "APİ_KEY=abcdef",
    "\u017fecret=abcdef", "pa\u017f\u017fword=abcdef", "tok\u212aen=abcdef",
    "我的密码 password=12345678 谢谢", "plain text with nothing", "api docs at http://x.y",
]


def run_all(text: str) -> str:
    for _, pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def test_the_shortcut_masks_what_every_pattern_masks() -> None:
    rng = random.Random(7)
    alphabet = "aApPiIkKeEyYtToOnNsScCrRwWdDbB_-=:'\" @/.\u0131\u0130\u017f\u212a中"
    texts = list(SAMPLES)
    for _ in range(4000):
        pieces = [rng.choice(SAMPLES) if rng.random() < 0.3 else
                  "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
                  for _ in range(rng.randint(1, 5))]
        texts.append(" ".join(pieces))
    for text in texts:
        assert redact(text) == run_all(text), text
    assert "hunter22" not in redact("password: hunter22")
