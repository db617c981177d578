"""DOM keyboard events to X keysyms (protocol.md §5, "Key mapping").

``KeyboardEvent.code`` names a physical key. It is mapped to the keysym that key carries *unshifted* on a
US layout (``KeyA`` → ``a``, ``Digit1`` → ``1``), so the desktop's X server applies the modifiers the viewer
holds (a viewer holding ``ShiftLeft`` and pressing ``Digit1`` types ``!`` through X's own keymap). When
``code`` is empty or unknown, ``KeyboardEvent.key`` is used instead: a single character maps to its keysym
(``"é"`` → ``eacute``), a named key (``"Enter"``, ``"ArrowLeft"``) to the matching function keysym.

Pure: no X connection is needed, only the keysym tables of python-xlib.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from types import MappingProxyType

from Xlib import XK

__all__ = [
    "CODE_TO_KEYSYM_NAME",
    "KEY_TO_KEYSYM_NAME",
    "keysym_for_char",
    "keysym_for_code",
    "keysym_for_key",
    "resolve_keysym",
]

# python-xlib loads only the "miscellany" and "latin1" groups by default; ISO_Level3_Shift (AltGraph) lives in
# "xkb" and the media keys in "xf86". Loading a group only adds names to Xlib.XK.
XK.load_keysym_group("xkb")
XK.load_keysym_group("xf86")

# Characters outside Latin-1 have Unicode keysyms (X11 protocol, appendix A): 0x01000000 + the code point.
# Latin-1 characters are their own keysym values (0x20 to 0x7e and 0xa0 to 0xff).
_UNICODE_KEYSYM_OFFSET = 0x01000000


# Keys whose DOM `code` and named `key` are the same word (UI Events), with their X keysym names.
_EDITING_KEYS = {
    "Enter": "Return",
    "Tab": "Tab",
    "Backspace": "BackSpace",
    "Escape": "Escape",
    "Delete": "Delete",
    "Insert": "Insert",
    "Home": "Home",
    "End": "End",
    "PageUp": "Prior",
    "PageDown": "Next",
    "ArrowLeft": "Left",
    "ArrowRight": "Right",
    "ArrowUp": "Up",
    "ArrowDown": "Down",
}


def _build_code_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        table[f"Key{letter}"] = letter.lower()
    for digit in "0123456789":
        table[f"Digit{digit}"] = digit
        table[f"Numpad{digit}"] = f"KP_{digit}"
    for n in range(1, 25):
        table[f"F{n}"] = f"F{n}"
    table.update(
        {
            "Minus": "minus",
            "Equal": "equal",
            "BracketLeft": "bracketleft",
            "BracketRight": "bracketright",
            "Backslash": "backslash",
            "Semicolon": "semicolon",
            "Quote": "apostrophe",
            "Backquote": "grave",
            "Comma": "comma",
            "Period": "period",
            "Slash": "slash",
            # The 102nd key of ISO keyboards: X's pc105 "us" keymap gives it less/greater.
            "IntlBackslash": "less",
            "Space": "space",
            **_EDITING_KEYS,
            "ShiftLeft": "Shift_L",
            "ShiftRight": "Shift_R",
            "ControlLeft": "Control_L",
            "ControlRight": "Control_R",
            "AltLeft": "Alt_L",
            "AltRight": "Alt_R",
            # The Windows/Command keys are Super in X's PC keymaps.
            "MetaLeft": "Super_L",
            "MetaRight": "Super_R",
            "CapsLock": "Caps_Lock",
            "NumLock": "Num_Lock",
            "ScrollLock": "Scroll_Lock",
            "PrintScreen": "Print",
            "Pause": "Pause",
            "ContextMenu": "Menu",
            # Keypad digits map to KP_n, the level X shows with NumLock on; X's own NumLock state picks
            # the level (KP_Home vs KP_7) as for a physical keypad, since both live on the same keycode.
            "NumpadDecimal": "KP_Decimal",
            "NumpadAdd": "KP_Add",
            "NumpadSubtract": "KP_Subtract",
            "NumpadMultiply": "KP_Multiply",
            "NumpadDivide": "KP_Divide",
            "NumpadEnter": "KP_Enter",
            "NumpadEqual": "KP_Equal",
            "NumpadComma": "KP_Separator",
            "AudioVolumeMute": "XF86_AudioMute",
            "AudioVolumeDown": "XF86_AudioLowerVolume",
            "AudioVolumeUp": "XF86_AudioRaiseVolume",
            "MediaPlayPause": "XF86_AudioPlay",
            "MediaStop": "XF86_AudioStop",
            "MediaTrackNext": "XF86_AudioNext",
            "MediaTrackPrevious": "XF86_AudioPrev",
        }
    )
    return table


def _build_key_table() -> dict[str, str]:
    # Named DOM `key` values (UI Events "KeyboardEvent key Values") that have an X keysym. "Dead",
    # "Unidentified", "Process" and the like are deliberately absent: they name no key X could type.
    table: dict[str, str] = {f"F{n}": f"F{n}" for n in range(1, 25)}
    table.update(
        {
            **_EDITING_KEYS,
            "Shift": "Shift_L",
            "Control": "Control_L",
            "Alt": "Alt_L",
            "AltGraph": "ISO_Level3_Shift",
            "Meta": "Super_L",
            "OS": "Super_L",  # Firefox before 118
            "Super": "Super_L",
            "Hyper": "Hyper_L",
            "CapsLock": "Caps_Lock",
            "NumLock": "Num_Lock",
            "ScrollLock": "Scroll_Lock",
            "Pause": "Pause",
            "Break": "Break",
            "PrintScreen": "Print",
            "ContextMenu": "Menu",
            "Clear": "Clear",
            "Help": "Help",
            "Cancel": "Cancel",
            "Select": "Select",
            "Execute": "Execute",
            "Find": "Find",
            "Undo": "Undo",
            "Redo": "Redo",
            "Compose": "Multi_key",
            "ModeChange": "Mode_switch",
            "AudioVolumeMute": "XF86_AudioMute",
            "AudioVolumeDown": "XF86_AudioLowerVolume",
            "AudioVolumeUp": "XF86_AudioRaiseVolume",
            "MediaPlayPause": "XF86_AudioPlay",
            "MediaStop": "XF86_AudioStop",
            "MediaTrackNext": "XF86_AudioNext",
            "MediaTrackPrevious": "XF86_AudioPrev",
        }
    )
    return table


CODE_TO_KEYSYM_NAME: Mapping[str, str] = MappingProxyType(_build_code_table())
"""DOM ``KeyboardEvent.code`` → name of the keysym that key carries unshifted on a US layout."""

KEY_TO_KEYSYM_NAME: Mapping[str, str] = MappingProxyType(_build_key_table())
"""Named DOM ``KeyboardEvent.key`` values → keysym name (single characters go through ``keysym_for_char``)."""


def _keysym_by_name(name: str) -> int:
    keysym = int(XK.string_to_keysym(name))
    if keysym == 0:
        # Every name in the tables above is checked by the tests; reaching this is a typo in a table.
        raise KeyError(f"python-xlib knows no keysym named {name!r}")
    return keysym


_CODE_TO_KEYSYM: Mapping[str, int] = MappingProxyType(
    {code: _keysym_by_name(name) for code, name in CODE_TO_KEYSYM_NAME.items()}
)
_KEY_TO_KEYSYM: Mapping[str, int] = MappingProxyType(
    {key: _keysym_by_name(name) for key, name in KEY_TO_KEYSYM_NAME.items()}
)


def keysym_for_code(code: str) -> int | None:
    """The keysym the physical key ``code`` carries unshifted on a US layout, or ``None`` if unknown."""
    return _CODE_TO_KEYSYM.get(code)


def keysym_for_char(char: str) -> int | None:
    """The keysym that types the single character ``char``; ``None`` for control characters and surrogates.

    Latin-1 characters are their own keysym (``"é"`` → ``eacute`` 0xe9); anything else uses the Unicode keysym
    ``0x01000000 + code point`` (``"€"`` → 0x10020ac), which X clients translate back to the character.
    """
    if len(char) != 1:
        return None
    point = ord(char)
    # Cc: C0/C1 control characters (named keys such as "Enter" arrive by name, never as "\r"); Cs: lone
    # surrogates, which no keysym encodes. Unassigned code points pass: a newer Unicode may assign them.
    if unicodedata.category(char) in ("Cc", "Cs"):
        return None
    if 0x20 <= point <= 0x7E or 0xA0 <= point <= 0xFF:
        return point
    return _UNICODE_KEYSYM_OFFSET + point


def keysym_for_key(key: str) -> int | None:
    """The keysym for DOM ``KeyboardEvent.key`` (a single character or a named key), or ``None``."""
    named = _KEY_TO_KEYSYM.get(key)
    if named is not None:
        return named
    return keysym_for_char(key)


def resolve_keysym(code: str, key: str) -> int | None:
    """The keysym to press for a key event (protocol.md §5): the character ``key`` names when it is one
    printable character — what the viewer's own layout typed, so a French or German viewer types what they
    see — else by ``code``, else by named ``key``."""
    if len(key) == 1 and not key.isspace():
        by_char = keysym_for_char(key)
        if by_char is not None:
            return by_char
    if code:
        by_code = keysym_for_code(code)
        if by_code is not None:
            return by_code
    return keysym_for_key(key)
