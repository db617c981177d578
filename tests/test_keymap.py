"""DOM code/key → X keysym mapping (protocol.md §5): pure, no X server."""

from __future__ import annotations

import pytest
from Xlib import XK

from impromptu.input.keymap import (
    CODE_TO_KEYSYM_NAME,
    KEY_TO_KEYSYM_NAME,
    keysym_for_char,
    keysym_for_code,
    keysym_for_key,
    resolve_keysym,
)


def ks(name: str) -> int:
    value = int(XK.string_to_keysym(name))
    assert value, f"test bug: unknown keysym {name}"
    return value


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("KeyA", "a"),
        ("KeyZ", "z"),
        ("Digit0", "0"),
        ("Digit1", "1"),
        ("Digit9", "9"),
        ("Minus", "minus"),
        ("Equal", "equal"),
        ("BracketLeft", "bracketleft"),
        ("BracketRight", "bracketright"),
        ("Backslash", "backslash"),
        ("Semicolon", "semicolon"),
        ("Quote", "apostrophe"),
        ("Backquote", "grave"),
        ("Comma", "comma"),
        ("Period", "period"),
        ("Slash", "slash"),
        ("Space", "space"),
        ("Enter", "Return"),
        ("Tab", "Tab"),
        ("Backspace", "BackSpace"),
        ("Escape", "Escape"),
        ("Delete", "Delete"),
        ("Insert", "Insert"),
        ("Home", "Home"),
        ("End", "End"),
        ("PageUp", "Prior"),
        ("PageDown", "Next"),
        ("ArrowLeft", "Left"),
        ("ArrowRight", "Right"),
        ("ArrowUp", "Up"),
        ("ArrowDown", "Down"),
        ("F1", "F1"),
        ("F12", "F12"),
        ("ShiftLeft", "Shift_L"),
        ("ShiftRight", "Shift_R"),
        ("ControlLeft", "Control_L"),
        ("ControlRight", "Control_R"),
        ("AltLeft", "Alt_L"),
        ("AltRight", "Alt_R"),
        ("MetaLeft", "Super_L"),
        ("MetaRight", "Super_R"),
        ("CapsLock", "Caps_Lock"),
        ("Numpad0", "KP_0"),
        ("Numpad7", "KP_7"),
        ("NumpadEnter", "KP_Enter"),
        ("NumpadAdd", "KP_Add"),
        ("NumpadSubtract", "KP_Subtract"),
        ("NumpadMultiply", "KP_Multiply"),
        ("NumpadDivide", "KP_Divide"),
        ("NumpadDecimal", "KP_Decimal"),
        ("ContextMenu", "Menu"),
        ("IntlBackslash", "less"),
        ("PrintScreen", "Print"),
        ("ScrollLock", "Scroll_Lock"),
        ("Pause", "Pause"),
        ("NumLock", "Num_Lock"),
    ],
)
def test_code_maps_to_unshifted_us_keysym(code: str, name: str) -> None:
    assert keysym_for_code(code) == ks(name)
    # For named (non-character) keys, `code` wins over `key`.
    assert resolve_keysym(code, "Unidentified") == ks(name)


def test_every_letter_and_digit_is_mapped() -> None:
    for letter in "abcdefghijklmnopqrstuvwxyz":
        assert keysym_for_code(f"Key{letter.upper()}") == ord(letter)
    for digit in "0123456789":
        assert keysym_for_code(f"Digit{digit}") == ord(digit)


def test_printable_key_wins_over_code() -> None:
    # The character the viewer's layout produced is what X types: "!" on Digit1, "z" on KeyY (QWERTZ), "_"
    # on Minus even when no Shift press was sent (the sink picks a keycode at the level Shift selects).
    assert resolve_keysym("Digit1", "!") == ks("exclam")
    assert resolve_keysym("KeyY", "z") == ks("z")
    assert resolve_keysym("Minus", "_") == ks("underscore")
    assert resolve_keysym("Space", " ") == ks("space")
    assert resolve_keysym("Enter", "Enter") == ks("Return")


def test_every_table_name_is_a_real_keysym() -> None:
    for name in [*CODE_TO_KEYSYM_NAME.values(), *KEY_TO_KEYSYM_NAME.values()]:
        assert XK.string_to_keysym(name) != 0, name


@pytest.mark.parametrize(
    ("char", "keysym"),
    [
        ("a", 0x61),
        ("A", 0x41),
        ("!", ks("exclam")),
        (" ", ks("space")),
        ("~", ks("asciitilde")),
        ("é", ks("eacute")),
        ("ß", ks("ssharp")),
        ("\u00a0", ks("nobreakspace")),
        ("€", 0x010020AC),
        ("ő", 0x01000151),
        ("ж", 0x01000436),
        ("😀", 0x0101F600),
    ],
)
def test_char_keysyms(char: str, keysym: int) -> None:
    assert keysym_for_char(char) == keysym
    assert resolve_keysym("", char) == keysym


@pytest.mark.parametrize("char", ["", "ab", "\x00", "\t", "\r", "\x7f", "\x85", "\ud800"])
def test_chars_without_keysym(char: str) -> None:
    assert keysym_for_char(char) is None


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("Enter", "Return"),
        ("ArrowLeft", "Left"),
        ("ArrowDown", "Down"),
        ("Backspace", "BackSpace"),
        ("Escape", "Escape"),
        ("Tab", "Tab"),
        ("PageUp", "Prior"),
        ("F5", "F5"),
        ("Shift", "Shift_L"),
        ("Control", "Control_L"),
        ("AltGraph", "ISO_Level3_Shift"),
        ("Meta", "Super_L"),
        ("CapsLock", "Caps_Lock"),
        ("ContextMenu", "Menu"),
    ],
)
def test_named_key_fallback(key: str, name: str) -> None:
    assert keysym_for_key(key) == ks(name)
    assert resolve_keysym("", key) == ks(name)


def test_unknown_code_falls_back_to_key() -> None:
    assert keysym_for_code("Lang9") is None
    assert resolve_keysym("Lang9", "é") == ks("eacute")
    assert resolve_keysym("Lang9", "Enter") == ks("Return")


@pytest.mark.parametrize("key", ["", "Dead", "Unidentified", "Process", "NotAKey", "enter"])
def test_unknown_keys_have_no_keysym(key: str) -> None:
    assert keysym_for_key(key) is None
    assert resolve_keysym("", key) is None
    assert resolve_keysym("NoSuchCode", key) is None
