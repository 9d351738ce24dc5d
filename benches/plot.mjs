// A small dependency-free SVG line chart: tick time versus agent count (log-log), one line
// per worker count.
export function tickPlotSvg(rows, title) {
  const W = 640, H = 400, L = 70, R = 20, T = 40, B = 50;
  const xs = rows.map((r) => r.agents);
  const ys = rows.map((r) => r.tick_median_us);
  const lx = (v) => Math.log10(v);
  const [x0, x1] = [Math.floor(lx(Math.min(...xs))), Math.ceil(lx(Math.max(...xs)))];
  const [y0, y1] = [Math.floor(lx(Math.min(...ys))), Math.ceil(lx(Math.max(...ys)))];
  const px = (v) => L + ((lx(v) - x0) / (x1 - x0 || 1)) * (W - L - R);
  const py = (v) => H - B - ((lx(v) - y0) / (y1 - y0 || 1)) * (H - T - B);
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${title}</text>`];
  for (let e = x0; e <= x1; e++) {
    const x = px(10 ** e);
    parts.push(`<line x1="${x}" y1="${T}" x2="${x}" y2="${H - B}" stroke="#ddd"/><text x="${x}" y="${H - B + 18}" text-anchor="middle">${(10 ** e).toLocaleString('en')}</text>`);
  }
  for (let e = y0; e <= y1; e++) {
    const y = py(10 ** e);
    parts.push(`<line x1="${L}" y1="${y}" x2="${W - R}" y2="${y}" stroke="#ddd"/><text x="${L - 8}" y="${y + 4}" text-anchor="end">${(10 ** e).toLocaleString('en')}</text>`);
  }
  parts.push(`<text x="${W / 2}" y="${H - 12}" text-anchor="middle">agents</text>`);
  parts.push(`<text x="16" y="${H / 2}" text-anchor="middle" transform="rotate(-90 16 ${H / 2})">median µs per tick</text>`);
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];
  const groups = [...new Set(rows.map((r) => r.label))];
  groups.forEach((g, i) => {
    const pts = rows.filter((r) => r.label === g).sort((a, b) => a.agents - b.agents);
    parts.push(`<polyline fill="none" stroke="${colors[i % 4]}" stroke-width="2" points="${pts.map((p) => `${px(p.agents)},${py(p.tick_median_us)}`).join(' ')}"/>`);
    for (const p of pts) parts.push(`<circle cx="${px(p.agents)}" cy="${py(p.tick_median_us)}" r="3" fill="${colors[i % 4]}"/>`);
    parts.push(`<text x="${L + 10}" y="${T + 16 + i * 16}" fill="${colors[i % 4]}">${g}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}
