/** HTML-escape any value for text or a quoted attribute: every value from a request or the database goes through it. */
export const esc = (s: unknown): string =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** A page's opening, as the dashboard and /submit share it: charset, viewport, title, the base style, then the page's own. */
export const pageHead = (title: string, maxWidthPx: number, css: string): string => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>gpu-gatekeeper — ${esc(title)}</title>
<style>
  :root { font: 14px/1.4 system-ui, sans-serif; color: #1d2230; background: #f6f7fb; }
  body { margin: 0 auto; max-width: ${maxWidthPx}px; padding: 16px 20px 48px; }
  h1 { font-size: 20px; margin: 0; } h3 { font-size: 14px; margin: 0; }
${css}
</style></head>`;
