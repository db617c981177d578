/**
 * What the page's pop-over panels (Files, Stats) share: shown under the bar over the picture, toggled by a button
 * in the bar whose `aria-expanded` follows, and the keyboard handed back to the picture when one closes that had it.
 */

/** Show `ui.panel` (and say so on `ui.button`); with `focus`, the panel takes the keyboard. */
export function showPanel(ui, { focus = true } = {}) {
  ui.panel.hidden = false;
  ui.button.setAttribute('aria-expanded', 'true');
  if (focus) ui.panel.focus({ preventScroll: true });
}

/** Hide `ui.panel`; returns whether it (or its button) had the keyboard, which the caller then hands back. */
export function hidePanel(ui) {
  const hadFocus = ui.panel.contains(document.activeElement) || document.activeElement === ui.button;
  ui.panel.hidden = true;
  ui.button.setAttribute('aria-expanded', 'false');
  return hadFocus;
}
