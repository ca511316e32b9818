"""Draw Moltbot's application icon with Pillow and write it in each OS's format.

Generated rather than committed as binaries so that one drawing serves the Linux menu entry
(PNG, from install.sh), the Windows installer and executable (ICO) and the macOS app (ICNS),
and a change to it is a reviewable diff. Usage:

    python installers/icon.py --png moltbot.png --ico moltbot.ico --icns moltbot.icns
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

BLUE = (37, 99, 235, 255)
WHITE = (255, 255, 255, 255)
SIZE = 1024  # drawn large once, scaled down for each size a format carries


def draw_icon(size: int = SIZE) -> Image.Image:
    """A speech bubble with two eyes on a rounded blue square: an assistant you talk to."""
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    u = size / 256
    d.rounded_rectangle((8 * u, 8 * u, 248 * u, 248 * u), radius=56 * u, fill=BLUE)
    d.ellipse((56 * u, 64 * u, 200 * u, 184 * u), fill=WHITE)
    d.polygon([(92 * u, 170 * u), (72 * u, 220 * u), (140 * u, 180 * u)], fill=WHITE)
    for x in (96, 136):
        d.ellipse((x * u, 108 * u, (x + 24) * u, 132 * u), fill=BLUE)
    return img


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--png", type=Path, help="256x256 PNG (Linux menu entry, tray)")
    parser.add_argument("--ico", type=Path, help="Windows icon, 16 to 256 px")
    parser.add_argument("--icns", type=Path, help="macOS icon, 16 to 1024 px")
    args = parser.parse_args(argv)
    if not (args.png or args.ico or args.icns):
        parser.error("name at least one of --png, --ico, --icns")
    img = draw_icon()
    for path in (args.png, args.ico, args.icns):
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
    if args.png:
        img.resize((256, 256), Image.Resampling.LANCZOS).save(args.png)
    if args.ico:
        img.save(args.ico, sizes=[(s, s) for s in (16, 24, 32, 48, 64, 128, 256)])
    if args.icns:
        img.save(args.icns)


if __name__ == "__main__":
    main()
