// odin-client.js — the Odin wire protocol (PROTOCOL.md, version 2) for
// browsers, with no DOM code: the view (app.js) only listens to it.
//
// One connection's life, the same loop as the harness's reference client
// (harness/src/client/machine.rs):
//
//   connecting ──open──> handshaking ──connection_established──> subscribing
//        ^                                                          │
//        │                                              subscribed  │
//   backing_off <──close / failure / timeout── live <───────────────┘
//
// - The token goes in the query string (`?token=`): browsers cannot set
//   headers on a WebSocket (PROTOCOL §2). It is asked for again before every
//   attempt, so a `4001 token expired` close can be followed by a fresh one.
// - Every (re)connect subscribes to the whole wanted channel set again
//   (PROTOCOL §4.4); the server then re-sends each token's latest price
//   (the snapshot, §4.3).
// - Events are de-duplicated by `nonce` in a window bounded in time and
//   count (§4.1): the snapshot repeats a price the page may already show.
// - Reconnects wait a capped exponential back-off with full jitter:
//   uniform(0, min(cap, base · 2^failures)), failures counted since the last
//   connection that stayed live for `stableAfterMs`.
// - The page asks for version 2 (`?protocol=2`): before the server closes a
//   connection on shutdown or at its lifetime it sends `reconnect` with a
//   `delayMs` of its own (§4.6, §4.7), and the page waits exactly that long
//   (at most the back-off's cap) instead of the back-off, so a fleet of
//   pages closed at once does not come back at once. That close is no
//   failure.

/** The protocol version this client asks for (`?protocol=`) and expects
 *  in `connection_established`. */
export const PROTOCOL_VERSION = 2;

/** The five event types that come from NATS and carry a de-dup nonce. */
export const EVENT_TYPES = new Set([
  'price_update',
  'volume_update',
  'trade_executed',
  'batch_update',
  'market_stats',
]);

/** A valid token id (PROTOCOL §1); anything else is refused before sending. */
export const TOKEN_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** Close codes the server uses (PROTOCOL §2, §4, §5) and what they mean here. */
export const CLOSE_REASONS = new Map([
  [1000, 'closed'],
  [1001, 'server going away'],
  [1003, 'binary frame refused'],
  [1006, 'connection lost'],
  [1008, 'too many invalid messages'],
  [1009, 'message too big'],
  [4001, 'token expired'],
  [4002, 'no pong'],
  [4003, 'connection lifetime reached'],
  [4008, 'slow consumer'],
]);

/** Milliseconds since the Unix epoch, with a fraction (like `timestamp`). */
export function nowMs() {
  return performance.timeOrigin + performance.now();
}

/**
 * Capped exponential back-off with full jitter; the same policy as
 * protocol/src/backoff.rs (250 ms base, 30 s cap by default).
 */
export class Backoff {
  /** @param {number} baseMs first ceiling @param {number} capMs largest ceiling */
  constructor(baseMs = 250, capMs = 30_000) {
    this.baseMs = baseMs;
    this.capMs = Math.max(capMs, baseMs);
    /** Consecutive failures since the last reset. */
    this.failures = 0;
  }

  /** The largest delay the next `nextDelay` may return. */
  ceiling() {
    // 2^failures overflows to Infinity long after the cap is reached.
    return Math.min(this.capMs, this.baseMs * 2 ** this.failures);
  }

  /** A delay uniform in [0, ceiling]; counts one failure. */
  nextDelay(random = Math.random) {
    const ceiling = this.ceiling();
    this.failures += 1;
    return random() * ceiling;
  }

  /** Starts over after a connection proved stable. */
  reset() {
    this.failures = 0;
  }
}

/**
 * Remembers the nonces seen in the last `ttlMs`, at most `capacity` of them
 * (oldest forgotten first), like protocol/src/dedup.rs: memory stays bounded
 * whatever the server sends. A Map keeps insertion order, so its first key is
 * always the oldest.
 */
export class DedupWindow {
  constructor(ttlMs = 600_000, capacity = 4096) {
    this.ttlMs = ttlMs;
    this.capacity = Math.max(1, capacity);
    /** nonce → first-seen time (ms); insertion order = age order. */
    this.seen = new Map();
  }

  /** Records `nonce`; true the first time, false for a duplicate. */
  observe(nonce, now = nowMs()) {
    this.expire(now);
    if (this.seen.has(nonce)) return false;
    if (this.seen.size >= this.capacity) {
      this.seen.delete(this.seen.keys().next().value);
    }
    this.seen.set(nonce, now);
    return true;
  }

  /** Forgets every nonce older than the window. */
  expire(now = nowMs()) {
    for (const [nonce, t] of this.seen) {
      if (now - t < this.ttlMs) break;
      this.seen.delete(nonce);
    }
  }

  /** How many nonces are remembered now. */
  get size() {
    return this.seen.size;
  }
}

/** Most tokens whose latest price nonce is remembered (far above the
 *  server's 100-channel limit, so only a misbehaving server could fill it). */
const MAX_LATEST_TOKENS = 4096;

/** A JWT's `exp` in milliseconds, read unchecked (the server checks); 0
 *  when it has none or is no JWT. */
export function tokenExpMs(token) {
  try {
    const part = String(token).split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const exp = JSON.parse(atob(part)).exp;
    return typeof exp === 'number' ? exp * 1000 : 0;
  } catch {
    return 0;
  }
}

/**
 * `url` with `token=<token>` added to its query (percent-encoded).
 */
export function withToken(url, token) {
  const u = new URL(url);
  u.searchParams.set('token', token);
  return u.toString();
}

/**
 * `url` asking for protocol `version` (`protocol=<version>` in its query).
 */
export function withProtocol(url, version = PROTOCOL_VERSION) {
  const u = new URL(url);
  u.searchParams.set('protocol', String(version));
  return u.toString();
}

/**
 * The WebSocket URL to use when the page was not given one: the page's own
 * host on port 8080 (the server's default WebSocket port), or 127.0.0.1 when
 * the page was opened as a file.
 */
export function defaultWsUrl(loc = globalThis.location) {
  const secure = loc && loc.protocol === 'https:';
  const host = (loc && loc.hostname) || '127.0.0.1';
  const bracketed = host.includes(':') ? `[${host}]` : host;
  return `${secure ? 'wss' : 'ws'}://${bracketed}:8080/ws`;
}

/**
 * A reconnecting, de-duplicating Odin client.
 *
 * Listen with `on(name, fn)`:
 * - `state`  `{phase, retryAt?, delayMs?, closeCode?, closeReason?, attempt}`
 *   on every phase change (`connecting`, `handshaking`, `subscribing`,
 *   `live`, `backing_off`, `stopped`);
 * - `established` the `connection_established` message;
 * - `event` `(msg, latencyMs, snapshot)` once per nonce, for the five NATS
 *   event types; `snapshot` is true for the re-sent latest price that
 *   follows a subscribe (its latency is its age, not a delivery time);
 * - `duplicate` `(msg)` for an event dropped by nonce;
 * - `subscribed` / `unsubscribed` / `pong` the server's answers;
 * - `server_error` an `error` message (`code`, `message`, optional `id`);
 * - `warning` a sentence about something odd but not fatal;
 * - `frame` `()` for every text frame, for a messages/s meter.
 */
export class OdinClient {
  /**
   * @param {object} options
   * @param {string} options.url the WebSocket endpoint, `ws://host:port/ws`
   * @param {string | (() => string)} options.token a JWT, or a function
   *   called before every attempt that returns one
   * @param {Iterable<string>} [options.channels] channels to keep subscribed
   * @param {number} [options.refreshAheadMs] when above 0, a live connection
   *   sends `refresh` (protocol version 2) with a fresh token from the source
   *   this long before its token's `exp`, instead of waiting for `4001`
   */
  constructor({
    url,
    token,
    channels = [],
    backoffBaseMs = 250,
    backoffCapMs = 30_000,
    stableAfterMs = 10_000,
    connectTimeoutMs = 10_000,
    handshakeTimeoutMs = 10_000,
    dedupTtlMs = 600_000,
    dedupCapacity = 4096,
    random = Math.random,
    WebSocketImpl = globalThis.WebSocket,
    refreshAheadMs = 0,
  }) {
    this.refreshAheadMs = refreshAheadMs;
    this.refreshTimer = null;
    this.url = url;
    this.tokenSource = typeof token === 'function' ? token : () => token;
    /** The channels every connection subscribes to (insertion-ordered). */
    this.wanted = new Set(channels);
    this.backoff = new Backoff(backoffBaseMs, backoffCapMs);
    /** The open connection's `reconnect` advisory delay, capped; null: none. */
    this.advisedDelayMs = null;
    this.stableAfterMs = stableAfterMs;
    this.connectTimeoutMs = connectTimeoutMs;
    this.handshakeTimeoutMs = handshakeTimeoutMs;
    this.dedup = new DedupWindow(dedupTtlMs, dedupCapacity);
    /** tokenId → nonce of the latest price handed to the view. */
    this.latestPrice = new Map();
    /** tokenId → `timestamp` of the `subscribed` that may be followed by
     *  its snapshot; cleared by the token's next price. */
    this.snapshotDue = new Map();
    this.random = random;
    this.WebSocketImpl = WebSocketImpl;

    this.phase = 'idle';
    this.ws = null;
    this.timer = null;
    this.liveSince = 0;
    this.retryAt = 0;
    this.requestSeq = 0;
    /** The `id` of the subscribe that ends the handshake. */
    this.handshakeId = null;
    /** The last `connection_established` (serverId, heartbeatIntervalMs …). */
    this.session = null;
    this.lastFrameAt = 0;
    this.watchdog = null;

    /** Counters for the view; never reset by reconnects. */
    this.counters = {
      frames: 0,
      events: 0,
      duplicates: 0,
      attempts: 0,
      connections: 0,
      failedAttempts: 0,
    };
    this.listeners = new Map();
  }

  /** Registers `fn` for `name`; returns a function that removes it. */
  on(name, fn) {
    if (!this.listeners.has(name)) this.listeners.set(name, new Set());
    this.listeners.get(name).add(fn);
    return () => this.listeners.get(name).delete(fn);
  }

  emit(name, ...args) {
    const fns = this.listeners.get(name);
    if (!fns) return;
    for (const fn of fns) {
      try {
        fn(...args);
      } catch (e) {
        // A broken listener must not break the connection loop.
        reportListenerError(e);
      }
    }
  }

  /** Opens the first connection. */
  start() {
    if (this.phase !== 'idle') return;
    this.connect();
  }

  /** Closes the connection and stops reconnecting. */
  stop() {
    this.clearTimers();
    this.phase = 'stopped';
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      detach(ws);
      if (ws.readyState <= 1) ws.close(1000, 'client stopped');
    }
    this.emit('state', this.stateInfo());
  }

  /** Adds channels to the wanted set and, when connected, subscribes now. */
  subscribe(channels) {
    const fresh = channels.filter((c) => !this.wanted.has(c));
    for (const c of fresh) this.wanted.add(c);
    // Before `connection_established` they go out with the handshake's
    // subscribe; after it, in their own request.
    if (fresh.length && (this.phase === 'subscribing' || this.phase === 'live')) {
      this.send({ type: 'subscribe', channels: fresh, id: this.nextId('sub') });
    }
  }

  /** Removes channels from the wanted set and, when connected, unsubscribes. */
  unsubscribe(channels) {
    const gone = channels.filter((c) => this.wanted.delete(c));
    if (gone.length && (this.phase === 'subscribing' || this.phase === 'live')) {
      this.send({ type: 'unsubscribe', channels: gone, id: this.nextId('unsub') });
    }
    // The latest-price memory is kept: when the channel comes back, the
    // snapshot re-sends that same event, which the view already has.
  }

  /** Sends `ping` (answered by `pong`), e.g. to measure a round trip. */
  ping() {
    return this.send({ type: 'ping', id: this.nextId('ping') });
  }

  /** What the view needs to show the connection state. */
  stateInfo(extra = {}) {
    return {
      phase: this.phase,
      retryAt: this.phase === 'backing_off' ? this.retryAt : 0,
      attempt: this.counters.attempts,
      serverId: this.session ? this.session.serverId : null,
      ...extra,
    };
  }

  // ---- the connection loop --------------------------------------------

  connect() {
    this.clearTimers();
    this.snapshotDue.clear();
    this.setPhase('connecting');
    this.counters.attempts += 1;
    let ws;
    try {
      this.advisedDelayMs = null;
      this.tokenExpMs = 0;
      const token = this.tokenSource();
      if (this.refreshAheadMs > 0) this.tokenExpMs = tokenExpMs(token);
      ws = new this.WebSocketImpl(withToken(withProtocol(this.url), token));
    } catch (e) {
      // A malformed URL: retrying will not fix it, but backing off keeps the
      // page responsive and shows the reason.
      this.ws = null;
      this.counters.failedAttempts += 1;
      this.backOff({ closeReason: String(e && e.message ? e.message : e) });
      return;
    }
    this.ws = ws;
    ws.onopen = () => this.onOpen(ws);
    ws.onmessage = (ev) => this.onFrame(ws, ev.data);
    // An `error` event is always followed by `close`, which decides.
    ws.onerror = () => {};
    ws.onclose = (ev) => this.onClose(ws, ev.code, ev.reason);
    this.timer = setTimeout(() => this.abort(ws, 'connect timed out'), this.connectTimeoutMs);
  }

  onOpen(ws) {
    if (ws !== this.ws) return;
    clearTimeout(this.timer);
    this.lastFrameAt = nowMs();
    this.setPhase('handshaking');
    // From the upgrade to `subscribed`: a server that stalls there counts
    // as a failed attempt.
    this.timer = setTimeout(() => this.abort(ws, 'handshake timed out'), this.handshakeTimeoutMs);
  }

  onFrame(ws, data) {
    if (ws !== this.ws) return;
    this.counters.frames += 1;
    this.lastFrameAt = nowMs();
    this.emit('frame');
    if (typeof data !== 'string') return; // The server sends text only.
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return; // Not ours to fix; the server never sends this.
    }
    if (!msg || typeof msg !== 'object') return;

    switch (msg.type) {
      case 'connection_established':
        if (this.phase !== 'handshaking') return;
        this.session = msg;
        if (msg.protocolVersion !== PROTOCOL_VERSION) {
          // Carry on: a server older than versions speaks version 1 (no
          // advisory, everything else the same); the view says so.
          this.emit('warning', `server speaks protocol ${msg.protocolVersion}, this page ${PROTOCOL_VERSION}`);
        }
        this.emit('established', msg);
        this.setPhase('subscribing');
        if (this.wanted.size === 0) {
          this.goLive();
        } else {
          this.handshakeId = this.nextId('sub');
          this.send({ type: 'subscribe', channels: [...this.wanted], id: this.handshakeId });
        }
        return;
      case 'subscribed':
        this.expectSnapshots(msg);
        this.emit('subscribed', msg);
        if (this.phase === 'subscribing' && msg.id === this.handshakeId) this.goLive();
        return;
      case 'unsubscribed':
        this.emit('unsubscribed', msg);
        return;
      case 'pong':
        this.emit('pong', msg);
        return;
      case 'refreshed':
        // The connection now ends at the new token's `exp`: refresh again before it.
        this.emit('refreshed', msg);
        if (typeof msg.exp === 'number') this.scheduleRefresh(msg.exp * 1000);
        return;
      case 'heartbeat':
        return; // Its arrival already fed the watchdog.
      case 'error':
        this.emit('server_error', msg);
        return;
      case 'reconnect':
        // The close follows; wait what the server asks (bounded by the cap,
        // so no server can park the page).
        if (Number.isFinite(msg.delayMs) && msg.delayMs >= 0) {
          this.advisedDelayMs = Math.min(msg.delayMs, this.backoff.capMs);
          this.emit('reconnect_advised', msg);
        }
        return;
      default:
        if (EVENT_TYPES.has(msg.type)) this.onEvent(msg);
      // Unknown types are ignored: a newer server may add some.
    }
  }

  /**
   * Right after `subscribed`, the server re-sends the latest price of each
   * newly subscribed token (PROTOCOL §4.3): an old event, whose age is not a
   * delivery latency. The first price of such a token that was created
   * before the `subscribed` answer is taken for that snapshot.
   */
  expectSnapshots(ack) {
    if (!Array.isArray(ack.channels) || typeof ack.timestamp !== 'number') return;
    for (const channel of ack.channels) {
      if (typeof channel !== 'string' || !channel.startsWith('token.')) continue;
      if (this.snapshotDue.size >= MAX_LATEST_TOKENS) break;
      this.snapshotDue.set(channel.slice('token.'.length), ack.timestamp);
    }
  }

  /** Hands an event to the view once per nonce. */
  onEvent(msg) {
    const nonce = msg.nonce;
    if (typeof nonce !== 'string' || nonce.length === 0) return;
    const now = nowMs();
    let snapshot = false;
    if (msg.type === 'price_update' && this.snapshotDue.has(msg.tokenId)) {
      snapshot = msg.timestamp < this.snapshotDue.get(msg.tokenId);
      this.snapshotDue.delete(msg.tokenId);
    }
    if (!this.dedup.observe(nonce, now)) {
      this.counters.duplicates += 1;
      this.emit('duplicate', msg);
      return;
    }
    if (msg.type === 'price_update' && typeof msg.tokenId === 'string') {
      // The snapshot re-sends a token's latest price; remember that one
      // nonce per token even after the window has forgotten it.
      const last = this.latestPrice.get(msg.tokenId);
      if (last === nonce) {
        this.counters.duplicates += 1;
        this.emit('duplicate', msg);
        return;
      }
      if (last !== undefined || this.latestPrice.size < MAX_LATEST_TOKENS) {
        this.latestPrice.set(msg.tokenId, nonce);
      }
    }
    this.counters.events += 1;
    // `timestamp` is when the event was created (ms since the epoch, with a
    // fraction), so this is publisher → screen latency, clocks permitting.
    const latencyMs = typeof msg.timestamp === 'number' ? now - msg.timestamp : NaN;
    this.emit('event', msg, latencyMs, snapshot);
  }

  goLive() {
    clearTimeout(this.timer);
    this.timer = null;
    this.liveSince = nowMs();
    this.counters.connections += 1;
    this.setPhase('live');
    this.startWatchdog();
    this.scheduleRefresh(this.tokenExpMs);
  }

  /** Sends `refresh` `refreshAheadMs` before `expMs` (off when 0). */
  scheduleRefresh(expMs) {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    if (!(this.refreshAheadMs > 0) || !expMs) return;
    const delay = Math.max(0, expMs - this.refreshAheadMs - nowMs());
    this.refreshTimer = setTimeout(() => {
      this.send({ type: 'refresh', token: this.tokenSource(), id: this.nextId('refresh') });
    }, delay);
  }

  onClose(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    detach(ws);
    const wasLive = this.phase === 'live';
    if (this.phase === 'connecting') {
      // Browsers hide why an upgrade failed (a refused port and a 401 look
      // the same), so say both.
      this.counters.failedAttempts += 1;
      this.backOff({ closeReason: 'could not connect (server down, or token refused)' });
      return;
    }
    // A connection that stayed live long enough proved the server healthy:
    // the back-off starts over.
    if (wasLive && nowMs() - this.liveSince >= this.stableAfterMs) this.backoff.reset();
    const advised = this.advisedDelayMs;
    this.advisedDelayMs = null;
    this.backOff({
      closeCode: code,
      closeReason: reason || CLOSE_REASONS.get(code) || `code ${code}`,
      wasLive,
    }, advised);
  }

  /** Gives up on `ws` (timeout, silent server): close it and back off. */
  abort(ws, why) {
    if (ws !== this.ws) return;
    this.ws = null;
    detach(ws);
    if (ws.readyState <= 1) ws.close(4000, why);
    if (this.phase === 'connecting') this.counters.failedAttempts += 1;
    this.backOff({ closeReason: why });
  }

  /** Waits `advisedMs` when the server advised it, else the back-off's next
   *  delay (a failure); then connects again. */
  backOff(extra, advisedMs = null) {
    this.clearTimers();
    const delay = advisedMs ?? this.backoff.nextDelay(this.random);
    this.retryAt = nowMs() + delay;
    this.phase = 'backing_off';
    this.emit('state', this.stateInfo({ delayMs: delay, ...extra }));
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /**
   * Browsers answer the server's WebSocket pings by themselves, but cannot
   * see a connection that silently died (a dropped network, a frozen
   * server). The server sends a `heartbeat` every `heartbeatIntervalMs`; two
   * missed ones and a margin mean the connection is gone.
   */
  startWatchdog() {
    const interval = (this.session && this.session.heartbeatIntervalMs) || 30_000;
    const limit = 2 * interval + 5_000;
    const ws = this.ws;
    this.watchdog = setInterval(() => {
      if (nowMs() - this.lastFrameAt > limit) this.abort(ws, 'no heartbeat');
    }, Math.min(interval, 5_000));
  }

  clearTimers() {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    clearTimeout(this.timer);
    clearInterval(this.watchdog);
    this.timer = null;
    this.watchdog = null;
  }

  setPhase(phase) {
    this.phase = phase;
    this.emit('state', this.stateInfo());
  }

  send(obj) {
    if (!this.ws || this.ws.readyState !== 1) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }

  nextId(prefix) {
    this.requestSeq += 1;
    return `${prefix}-${this.requestSeq}`;
  }
}

/** Stops a socket we gave up on from calling back into the client. */
function detach(ws) {
  ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
}

function reportListenerError(e) {
  // Thrown asynchronously so it reaches window.onerror and the console
  // without unwinding the client's own code.
  setTimeout(() => {
    throw e;
  });
}
