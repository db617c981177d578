// Small line charts (sparklines) of the last minute of a figure, drawn on a canvas: no library. `sparkline()` is
// the pure part (where each point goes); `drawSparkline()` paints it.

/**
 * Where `values` (oldest first, numbers or null for a gap) go on a `width`×`height` chart of `slots` samples, the
 * newest at the right edge: `{max, points}`, points `[x, y]` or null for a gap. The scale runs from 0 to the
 * largest value (at least `minMax`, so a flat line of small numbers does not fill the chart), rounded up to a
 * "nice" number (1, 2 or 5 × 10ⁿ).
 */
export function sparkline(values, width, height, { slots = 60, minMax = 1, pad = 3 } = {}) {
  const finite = values.filter((v) => typeof v === 'number' && Number.isFinite(v));
  const max = niceCeil(Math.max(minMax, ...finite));
  const step = slots > 1 ? (width - 1) / (slots - 1) : 0;
  const offset = slots - values.length;
  const points = values.map((v, i) => {
    if (typeof v !== 'number' || !Number.isFinite(v)) return null;
    const x = (offset + i) * step;
    const y = pad + (height - 2 * pad) * (1 - Math.min(1, Math.max(0, v) / max));
    return [round2(x), round2(y)];
  });
  return { max, points };
}

const round2 = (v) => Math.round(v * 100) / 100;

/** The smallest of 1, 2, 5 × 10ⁿ at least `v` (v > 0). */
export function niceCeil(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p * (1 + 1e-9)) return m * p;
  return 10 * p;
}

/**
 * Paint `values` on `canvas` (sized to its CSS box on the device's pixels): a faint frame, the line (broken where a
 * value is missing, a dot for a lone one), and the scale's top in the upper left corner. `color` is the line's;
 * `minMax` the least top of the scale.
 */
export function drawSparkline(canvas, values, { color = '#6aa0d8', unit = '', slots = 60, minMax = 1 } = {}) {
  const dpr = globalThis.devicePixelRatio || 1;
  const cssW = canvas.clientWidth || canvas.width;
  const cssH = canvas.clientHeight || canvas.height;
  const w = Math.max(1, Math.round(cssW * dpr));
  const h = Math.max(1, Math.round(cssH * dpr));
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== h) canvas.height = h;
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);
  ctx.fillStyle = '#151515';
  ctx.fillRect(0, 0, cssW, cssH);
  ctx.strokeStyle = '#2c2c2c';
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(0, cssH - 0.5);
  ctx.lineTo(cssW, cssH - 0.5);
  ctx.stroke();
  const { max, points } = sparkline(values, cssW, cssH, { slots, minMax });
  ctx.strokeStyle = color;
  ctx.fillStyle = color;
  ctx.lineWidth = 2; // on whole pixels (y rounded): crisp even when flat at the bottom
  ctx.lineJoin = 'round';
  ctx.beginPath();
  let drawing = false;
  for (let i = 0; i < points.length; i++) {
    const p = points[i];
    if (p === null) {
      drawing = false;
      continue;
    }
    const alone = (i === 0 || points[i - 1] === null) && (i === points.length - 1 || points[i + 1] === null);
    const [x, y] = [p[0], Math.round(p[1])];
    if (alone) ctx.fillRect(x - 1, y - 1, 2, 2);
    if (drawing) ctx.lineTo(x, y);
    else ctx.moveTo(x, y);
    drawing = true;
  }
  ctx.stroke();
  ctx.fillStyle = '#888';
  ctx.font = '10px system-ui, sans-serif';
  ctx.textBaseline = 'top';
  ctx.textAlign = 'left'; // over the oldest values: the newest, at the right, stay in sight
  ctx.fillText(unit ? `${max} ${unit}` : String(max), 3, 1);
}
