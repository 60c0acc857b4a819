/**
 * Horizontal bar charts as standalone SVG, written by hand: one panel per case, one bar per
 * server, each panel scaled to its own largest value, berth in its own colour.
 */

/** One bar. */
export interface Bar {
  readonly label: string;
  /** null: drawn as "n/a" with the note. */
  readonly value: number | null;
  readonly text: string;
  readonly highlight: boolean;
}

/** One panel (a case of a scenario). */
export interface Panel {
  readonly title: string;
  readonly bars: readonly Bar[];
}

const WIDTH = 760;
const LABEL_W = 190;
const VALUE_W = 130;
const BAR_H = 16;
const GAP = 5;
const PANEL_GAP = 18;
const TITLE_H = 44;

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** An SVG document with a title, a subtitle and one bar panel per case. */
export function barChart(title: string, subtitle: string, panels: readonly Panel[]): string {
  const out: string[] = [];
  let y = TITLE_H;
  const barMax = WIDTH - LABEL_W - VALUE_W - 20;
  for (const p of panels) {
    y += 6;
    out.push(`<text x="10" y="${y + 12}" class="panel">${esc(p.title)}</text>`);
    y += 20;
    const max = Math.max(0, ...p.bars.map((b) => b.value ?? 0));
    for (const b of p.bars) {
      const cy = y + BAR_H / 2 + 4;
      out.push(`<text x="${LABEL_W - 8}" y="${cy}" class="label" text-anchor="end">${esc(b.label)}</text>`);
      if (b.value === null || max <= 0) {
        out.push(`<text x="${LABEL_W + 4}" y="${cy}" class="na">${esc(b.text)}</text>`);
      } else {
        const w = Math.max(1, (b.value / max) * barMax);
        out.push(
          `<rect x="${LABEL_W}" y="${y}" width="${w.toFixed(1)}" height="${BAR_H}" rx="2" class="${b.highlight ? "berth" : "peer"}"/>`,
        );
        out.push(`<text x="${(LABEL_W + w + 6).toFixed(1)}" y="${cy}" class="value">${esc(b.text)}</text>`);
      }
      y += BAR_H + GAP;
    }
    y += PANEL_GAP - GAP;
  }
  const height = y + 10;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" role="img" aria-label="${esc(title)}">`,
    "<style>",
    "text{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;font-size:12px;fill:#24292f}",
    ".title{font-size:15px;font-weight:600}.sub{fill:#57606a}.panel{font-weight:600}",
    ".na{fill:#8c959f;font-style:italic}.berth{fill:#d9480f}.peer{fill:#6e7781}",
    "</style>",
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="10" y="20" class="title">${esc(title)}</text>`,
    `<text x="10" y="37" class="sub">${esc(subtitle)}</text>`,
    ...out,
    "</svg>",
    "",
  ].join("\n");
}
