// metrics.js — the page's live figures: messages per second and latency
// percentiles over the last minute. Both use fixed-size memory whatever the
// message rate, so a busy feed cannot grow the page.

/**
 * Messages per second over a sliding window of `slots` × `slotMs`.
 */
export class RateMeter {
  constructor(slotMs = 250, slots = 8) {
    this.slotMs = slotMs;
    this.counts = new Float64Array(slots);
    /** Index (time / slotMs) of the newest slot written. */
    this.head = -1;
  }

  /** Counts `n` messages at `now` (ms). */
  add(n, now) {
    this.advance(now);
    this.counts[this.head % this.counts.length] += n;
  }

  /** Messages per second over the window ending at `now`. */
  rate(now) {
    this.advance(now);
    let sum = 0;
    for (const c of this.counts) sum += c;
    return (sum * 1000) / (this.slotMs * this.counts.length);
  }

  advance(now) {
    const slot = Math.floor(now / this.slotMs);
    if (this.head < 0) this.head = slot;
    // Clear the slots skipped since the last write (at most the whole ring).
    const steps = Math.min(slot - this.head, this.counts.length);
    for (let i = 1; i <= steps; i++) {
      this.counts[(this.head + i) % this.counts.length] = 0;
    }
    if (slot > this.head) this.head = slot;
  }
}

/** Bins grow by 2 % each: any percentile is within 2 % of the truth. */
const GROWTH = 1.02;
/** The first bin ends at 10 µs; the last one catches everything above ~1.7 h. */
const FIRST_BIN_MS = 0.01;
const BINS = 1024;

function binOf(ms) {
  if (!(ms > FIRST_BIN_MS)) return 0; // also NaN and negative (clock skew)
  const i = Math.ceil(Math.log(ms / FIRST_BIN_MS) / Math.log(GROWTH));
  return Math.min(i, BINS - 1);
}

function upperBoundOf(bin) {
  return FIRST_BIN_MS * GROWTH ** bin;
}

/**
 * Latency percentiles over the last `windowSeconds`: one log-scaled
 * histogram per second in a ring, merged when asked.
 */
export class LatencyWindow {
  constructor(windowSeconds = 60) {
    this.buckets = Array.from({ length: windowSeconds }, () => ({
      second: -1,
      count: 0,
      bins: new Uint32Array(BINS),
    }));
  }

  /** Records one latency sample (ms) seen at `now` (ms since the epoch). */
  record(latencyMs, now) {
    const second = Math.floor(now / 1000);
    const b = this.buckets[second % this.buckets.length];
    if (b.second !== second) {
      b.second = second;
      b.count = 0;
      b.bins.fill(0);
    }
    b.bins[binOf(latencyMs)] += 1;
    b.count += 1;
  }

  /**
   * `{count, p50, p99}` over the window ending at `now`; the percentiles
   * are `null` without samples.
   */
  summary(now) {
    const current = Math.floor(now / 1000);
    const live = this.buckets.filter(
      (b) => b.second >= 0 && current - b.second < this.buckets.length && b.count > 0,
    );
    const count = live.reduce((n, b) => n + b.count, 0);
    if (count === 0) return { count: 0, p50: null, p99: null };
    const merged = new Float64Array(BINS);
    for (const b of live) {
      for (let i = 0; i < BINS; i++) merged[i] += b.bins[i];
    }
    return { count, p50: percentile(merged, count, 0.5), p99: percentile(merged, count, 0.99) };
  }
}

function percentile(bins, count, q) {
  const rank = Math.max(1, Math.ceil(q * count));
  let seen = 0;
  for (let i = 0; i < bins.length; i++) {
    seen += bins[i];
    if (seen >= rank) return upperBoundOf(i);
  }
  return upperBoundOf(bins.length - 1);
}
