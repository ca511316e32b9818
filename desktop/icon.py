"""The tray icon, drawn with Pillow: its shape as well as its colour tells the state, so it
reads at 16 px and without colour vision (ring: stopped, half disc: starting, full disc:
running, disc with a bar: error)."""

from __future__ import annotations

from enum import StrEnum

from PIL import Image, ImageDraw

SIZE = 64


class State(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    ERROR = "error"


COLOURS = {State.STOPPED: (128, 128, 128), State.STARTING: (230, 160, 20),
           State.RUNNING: (40, 170, 80), State.ERROR: (210, 50, 50)}


def draw_icon(state: State, size: int = SIZE) -> Image.Image:
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    colour = COLOURS[state]
    box = (size * 0.06, size * 0.06, size * 0.94, size * 0.94)
    width = max(2, size // 9)
    if state is State.STOPPED:
        draw.ellipse(box, outline=colour, width=width)
    elif state is State.STARTING:
        draw.ellipse(box, outline=colour, width=width)
        draw.pieslice(box, start=90, end=270, fill=colour)
    else:
        draw.ellipse(box, fill=colour)
    if state is State.ERROR:
        bar = (size * 0.22, size * 0.42, size * 0.78, size * 0.58)
        draw.rectangle(bar, fill=(255, 255, 255))
    return image
