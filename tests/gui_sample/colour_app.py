"""A small X application for the sample suite: a window filling the screen in one colour, titled as asked, that
turns to another colour when clicked, and with ``--animate`` moves a white square across itself (so that the screen
keeps changing, as a busy app's does).

    python colour_app.py --title TITLE --colour ff0000 [--click-colour 0000ff] [--animate]
"""

from __future__ import annotations

import argparse
import os
import select
import time

from Xlib import X, Xatom
from Xlib.display import Display

SQUARE = 48
STEP_S = 0.04


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--title", required=True)
    parser.add_argument("--colour", default="ff0000")
    parser.add_argument("--click-colour", default=None)
    parser.add_argument("--animate", action="store_true")
    args = parser.parse_args()
    colour = int(args.colour, 16)

    d = Display()
    screen = d.screen()
    width, height = screen.width_in_pixels, screen.height_in_pixels
    window = screen.root.create_window(
        0, 0, width, height, 0, screen.root_depth,
        event_mask=X.ExposureMask | X.ButtonPressMask | X.StructureNotifyMask,
    )  # fmt: skip
    window.set_wm_name(args.title)
    window.set_wm_class("colour_app", "ColourApp")
    window.change_property(d.intern_atom("_NET_WM_PID"), Xatom.CARDINAL, 32, [os.getpid()])
    gc = window.create_gc()
    white = window.create_gc(foreground=0xFFFFFF)
    window.map()
    d.flush()

    x = 0

    def paint() -> None:
        gc.change(foreground=colour)
        window.fill_rectangle(gc, 0, 0, width, height)
        if args.animate:
            window.fill_rectangle(white, x, height // 2 - SQUARE // 2, SQUARE, SQUARE)
        d.flush()

    next_step = time.monotonic()
    while True:
        timeout = max(0.0, next_step - time.monotonic()) if args.animate else None
        if not d.pending_events():
            select.select([d.fileno()], [], [], timeout)
        while d.pending_events():
            event = d.next_event()
            if event.type == X.Expose and event.count == 0:
                paint()
            elif event.type == X.ButtonPress and args.click_colour is not None:
                colour = int(args.click_colour, 16)
                paint()
        if args.animate and time.monotonic() >= next_step:
            next_step += STEP_S
            x = (x + 8) % max(width - SQUARE, 1)
            paint()


if __name__ == "__main__":
    main()
