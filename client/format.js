// format.js — how numbers and times are shown. Pure functions, no DOM.

const twoDecimals = new Intl.NumberFormat('en-US', {
  minimumFractionDigits: 2,
  maximumFractionDigits: 2,
});
const significant = new Intl.NumberFormat('en-US', { maximumSignificantDigits: 6 });
const compact = new Intl.NumberFormat('en-US', {
  notation: 'compact',
  maximumFractionDigits: 2,
});
const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** A price: cents above 1,000, six significant digits below (memecoins). */
export function price(p) {
  if (!Number.isFinite(p)) return '–';
  return Math.abs(p) >= 1000 ? twoDecimals.format(p) : significant.format(p);
}

/** A large amount (volume): 1.23M, 45.6K. */
export function volume(v) {
  return Number.isFinite(v) ? compact.format(v) : '–';
}

/** A whole count with thousands separators. */
export function count(n) {
  return Number.isFinite(n) ? integer.format(n) : '–';
}

/** A trade amount: compact when large, six significant digits otherwise. */
export function amount(a) {
  if (!Number.isFinite(a)) return '–';
  return Math.abs(a) >= 10_000 ? compact.format(a) : significant.format(a);
}

/** A signed percentage, `+1.23 %`. */
export function percent(p) {
  if (!Number.isFinite(p)) return '–';
  const digits = Math.abs(p).toFixed(2);
  // No sign on a change that rounds to zero ("−0.00 %" reads as a fall).
  const sign = digits === '0.00' ? '' : p > 0 ? '+' : '−';
  return `${sign}${digits} %`;
}

/** A latency: `0.42 ms`, `12.3 ms`, `1.25 s`. */
export function latency(ms) {
  if (ms === null || !Number.isFinite(ms)) return '–';
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms.toFixed(1)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

/** A wall-clock time with milliseconds, `14:03:27.512`, in local time. */
export function clock(epochMs) {
  const d = new Date(epochMs);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}
