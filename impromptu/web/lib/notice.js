// A full-page notice: what a page shows instead of the desktop when it cannot work at all (no WebCodecs, a damaged
// link, a bad option). Text only: nothing in it is ever parsed as HTML.

/** Fill `section` with a heading `title` and one paragraph per line of `lines`, and show it. */
export function fillNotice(section, title, lines) {
  const h = document.createElement('h1');
  h.textContent = title;
  section.replaceChildren(h);
  for (const line of lines) {
    const p = document.createElement('p');
    p.textContent = line;
    section.append(p);
  }
  section.hidden = false;
}
