// app.js — the live price page: reads its settings from the address (or the
// settings form), runs an OdinClient, and draws what it hands over.
//
// Events only update the model; drawing happens once per animation frame,
// for the rows that changed. A feed of thousands of messages per second thus
// costs one DOM pass per frame, and a hidden tab does no drawing at all.

import { OdinClient, TOKEN_ID_PATTERN, defaultWsUrl, nowMs } from './odin-client.js';
import { LatencyWindow, RateMeter } from './metrics.js';
import * as fmt from './format.js';

/** Tokens watched when the address names none. */
const DEFAULT_TOKENS = ['BTC', 'ETH', 'SOL', 'BNB', 'XRP', 'DOGE'];
/** Trade rows kept on screen. */
const MAX_TRADES = 30;
/** Batch tiles drawn at most (the rest are counted, not drawn). */
const MAX_TILES = 400;
/** Connection log lines kept. */
const MAX_LOG = 60;
/** How often the figures and the reconnect countdown refresh. */
const FIGURES_EVERY_MS = 250;

const $ = (id) => document.getElementById(id);

// ---- settings -----------------------------------------------------------

const params = new URLSearchParams(location.search);
/** Where this tab keeps the JWT: never in the address bar or the history. */
const TOKEN_KEY = 'odin.token';
const settings = {
  ws: params.get('ws') || defaultWsUrl(location),
  token: params.get('token') || storedToken(),
  tokens: parseTokenList(params.get('tokens')) ?? DEFAULT_TOKENS,
};

function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

function parseTokenList(text) {
  if (text === null) return null;
  const ids = text.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = ids.filter((id) => !TOKEN_ID_PATTERN.test(id));
  if (bad.length) log(`ignored invalid token id(s): ${bad.join(', ')}`, 'warn');
  return [...new Set(ids.filter((id) => TOKEN_ID_PATTERN.test(id)))];
}

/** Keeps the address in step, so a reload comes back to the same view. The
 * token is taken out of it (a `?token=` link works once) and kept in this
 * tab's session storage instead: an address bar, a history entry or a
 * shared screen must not show a credential. */
function saveToAddress() {
  const p = new URLSearchParams();
  p.set('ws', settings.ws);
  p.set('tokens', [...model.watched].join(','));
  try {
    if (settings.token) sessionStorage.setItem(TOKEN_KEY, settings.token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // No storage (a file:// page in some browsers): a reload asks again.
  }
  try {
    history.replaceState(null, '', `?${p}`);
  } catch {
    // Some browsers refuse history changes on file:// pages; not needed there.
  }
}

// ---- model --------------------------------------------------------------

const model = {
  /** Token ids in the price table, in the order they were added. */
  watched: new Set(),
  /** Everything known about a token ever watched (kept when unwatched, so
   *  re-adding it shows its last price while the snapshot arrives). */
  tokens: new Map(),
  /** The batch view: tokenId → tile state, in first-seen order. */
  batch: new Map(),
  batchInfo: { at: 0, count: 0 },
  /** Trades not drawn yet, oldest first. */
  newTrades: [],
  market: null,
  /** Whether something waits for the next frame. */
  frameRequested: false,
};

function tokenState(id) {
  let t = model.tokens.get(id);
  if (!t) {
    t = {
      id,
      price: NaN,
      baseline: NaN, // first price seen: "since connect" is relative to it
      change24h: NaN,
      volume24h: NaN,
      drawnPrice: NaN,
      row: null,
      dirty: true,
    };
    model.tokens.set(id, t);
  }
  return t;
}

const rate = new RateMeter();
const latencies = new LatencyWindow(60);

// ---- the client ---------------------------------------------------------

let client = null;

function startClient() {
  if (client) client.stop();
  if (!settings.token) {
    $('settings').open = true;
    showState({ phase: 'no_token' });
    log('no token: paste one in the connection settings (odin-server token --dev --sub me)', 'warn');
    return;
  }
  client = new OdinClient({
    url: settings.ws,
    token: settings.token,
    channels: ['batch', 'market', ...[...model.watched].map((id) => `token.${id}`)],
  });
  client.on('state', onState);
  client.on('established', (m) =>
    log(`connected to ${m.serverId} as ${m.clientId} (protocol ${m.protocolVersion}, heartbeat ${m.heartbeatIntervalMs / 1000} s)`),
  );
  client.on('frame', () => rate.add(1, nowMs()));
  client.on('event', onEvent);
  client.on('server_error', (m) => log(`server: ${m.code}: ${m.message}`, 'warn'));
  client.on('reconnect_advised', (m) =>
    log(`server closes this connection (${m.reason}); reconnecting in ${(m.delayMs / 1000).toFixed(1)} s as it asks`),
  );
  client.on('warning', (text) => log(text, 'warn'));
  // A debugging handle for the browser console.
  window.odin = { client, model };
  client.start();
}

/** Whether the connection is down; only the first failure of an outage
 *  is logged, the badge's countdown shows the retries. */
let outage = false;
function onState(info) {
  showState(info);
  if (info.phase === 'backing_off') {
    const why = info.closeCode ? `closed ${info.closeCode} (${info.closeReason})` : info.closeReason;
    if (!outage) log(`${why}; reconnecting with back-off`, 'warn');
    outage = true;
  } else if (info.phase === 'live') {
    outage = false;
    log(`live: subscribed to ${client.wanted.size} channel(s)`);
  }
}

function onEvent(msg, latencyMs, snapshot) {
  if (!snapshot) latencies.record(latencyMs, nowMs());
  switch (msg.type) {
    case 'price_update': {
      const t = tokenState(msg.tokenId);
      t.price = msg.price;
      if (Number.isNaN(t.baseline)) t.baseline = msg.price;
      if (typeof msg.change24h === 'number') t.change24h = msg.change24h;
      t.dirty = true;
      break;
    }
    case 'volume_update': {
      const t = tokenState(msg.tokenId);
      t.volume24h = msg.volume24h;
      t.dirty = true;
      break;
    }
    case 'trade_executed':
      model.newTrades.push(msg);
      if (model.newTrades.length > MAX_TRADES) model.newTrades.shift();
      break;
    case 'batch_update':
      for (const u of msg.updates || []) onBatchEntry(u);
      model.batchInfo = { at: msg.timestamp, count: model.batch.size };
      break;
    case 'market_stats':
      model.market = msg;
      break;
  }
  requestFrame();
}

function onBatchEntry(u) {
  if (typeof u.tokenId !== 'string' || typeof u.price !== 'number') return;
  let b = model.batch.get(u.tokenId);
  if (!b) {
    b = { id: u.tokenId, price: NaN, previous: NaN, volume24h: NaN, tile: null, dirty: true };
    model.batch.set(u.tokenId, b);
  }
  b.previous = b.price;
  b.price = u.price;
  if (typeof u.volume24h === 'number') {
    b.volume24h = u.volume24h;
    // The batch also carries the volume of watched tokens.
    const t = model.tokens.get(u.tokenId);
    if (t && model.watched.has(u.tokenId)) {
      t.volume24h = u.volume24h;
      t.dirty = true;
    }
  }
  b.dirty = true;
}

// ---- watching tokens ----------------------------------------------------

function watch(id) {
  if (!TOKEN_ID_PATTERN.test(id)) {
    log(`"${id}" is not a valid token id (A–Z, a–z, 0–9, _ and -, at most 64)`, 'warn');
    return;
  }
  if (model.watched.has(id)) return;
  model.watched.add(id);
  const t = tokenState(id);
  t.dirty = true;
  if (client) client.subscribe([`token.${id}`]);
  markTile(id);
  saveToAddress();
  requestFrame();
}

function unwatch(id) {
  if (!model.watched.delete(id)) return;
  const t = model.tokens.get(id);
  if (t && t.row) {
    t.row.el.remove();
    t.row = null;
  }
  if (client) client.unsubscribe([`token.${id}`]);
  markTile(id);
  saveToAddress();
  requestFrame();
}

// ---- drawing ------------------------------------------------------------

function requestFrame() {
  if (model.frameRequested) return;
  model.frameRequested = true;
  requestAnimationFrame(draw);
}

function draw() {
  model.frameRequested = false;
  drawPrices();
  drawTrades();
  drawBatch();
}

const flashColours = {};
function flash(el, direction) {
  if (!direction) return;
  const colour = direction > 0 ? flashColours.up : flashColours.down;
  el.animate([{ backgroundColor: colour }, { backgroundColor: 'transparent' }], {
    duration: 900,
    easing: 'ease-out',
  });
}

function cell(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

function drawPrices() {
  const body = $('prices').tBodies[0];
  for (const id of model.watched) {
    const t = tokenState(id);
    if (!t.row) {
      t.row = priceRow(t);
      body.append(t.row.el);
      t.dirty = true;
    }
    if (!t.dirty) continue;
    t.dirty = false;
    const r = t.row;
    const direction = Number.isNaN(t.drawnPrice) || Number.isNaN(t.price) ? 0 : Math.sign(t.price - t.drawnPrice);
    r.price.textContent = fmt.price(t.price);
    r.price.dataset.value = Number.isNaN(t.price) ? '' : String(t.price);
    if (direction) {
      r.price.classList.toggle('up', direction > 0);
      r.price.classList.toggle('down', direction < 0);
      flash(r.el, direction);
    }
    t.drawnPrice = t.price;
    const since = ((t.price - t.baseline) / t.baseline) * 100;
    setSigned(r.since, since, fmt.percent(since));
    setSigned(r.change24h, t.change24h, fmt.percent(t.change24h));
    r.volume.textContent = fmt.volume(t.volume24h);
  }
  const empty = body.querySelector('tr.empty');
  if (model.watched.size === 0 && !empty) {
    const row = cell('tr', 'empty');
    const td = cell('td', '', 'No tokens watched: add one above, or click a tile below.');
    td.colSpan = 6;
    row.append(td);
    body.append(row);
  } else if (model.watched.size > 0 && empty) {
    empty.remove();
  }
}

function priceRow(t) {
  const el = cell('tr');
  el.dataset.token = t.id;
  const remove = cell('button', 'remove', '×');
  remove.type = 'button';
  remove.title = `stop watching ${t.id}`;
  remove.addEventListener('click', () => unwatch(t.id));
  const r = {
    el,
    price: cell('td', 'num price', '–'),
    since: cell('td', 'num since', '–'),
    change24h: cell('td', 'num change24h', '–'),
    volume: cell('td', 'num volume', '–'),
  };
  const action = cell('td');
  action.append(remove);
  el.append(cell('td', 'token', t.id), r.price, r.since, r.change24h, r.volume, action);
  return r;
}

function setSigned(el, value, text) {
  el.textContent = text;
  el.classList.toggle('up', value > 0);
  el.classList.toggle('down', value < 0);
}

function drawTrades() {
  if (model.newTrades.length === 0) return;
  const body = $('trades').tBodies[0];
  const rows = model.newTrades.map(tradeRow).reverse(); // newest on top
  model.newTrades = [];
  body.prepend(...rows);
  while (body.rows.length > MAX_TRADES) body.lastElementChild.remove();
}

function tradeRow(m) {
  const el = cell('tr');
  el.dataset.nonce = m.nonce;
  el.dataset.tradeId = m.tradeId;
  el.dataset.token = m.tokenId;
  const side = m.side === 'sell' ? 'sell' : 'buy';
  el.append(
    cell('td', 'time', fmt.clock(m.timestamp)),
    cell('td', 'token', m.tokenId),
    cell('td', `side-${side}`, side),
    cell('td', 'num', fmt.price(m.price)),
    cell('td', 'num', fmt.amount(m.amount)),
  );
  return el;
}

function drawBatch() {
  const box = $('batch');
  let drawn = box.childElementCount;
  for (const b of model.batch.values()) {
    if (!b.dirty) continue;
    b.dirty = false;
    if (!b.tile) {
      if (drawn >= MAX_TILES) continue;
      b.tile = batchTile(b);
      box.append(b.tile.el);
      drawn += 1;
    }
    b.tile.price.textContent = fmt.price(b.price);
    b.tile.volume.textContent = `vol ${fmt.volume(b.volume24h)}`;
    const direction = Number.isNaN(b.previous) ? 0 : Math.sign(b.price - b.previous);
    b.tile.price.classList.toggle('up', direction > 0);
    b.tile.price.classList.toggle('down', direction < 0);
    flash(b.tile.el, direction);
  }
  const { at, count } = model.batchInfo;
  if (at) {
    const hidden = count > MAX_TILES ? ` (first ${MAX_TILES} shown)` : '';
    $('batch-info').textContent = `${fmt.count(count)} tokens, last batch ${fmt.clock(at)}${hidden}`;
  }
}

function batchTile(b) {
  const el = cell('div', 'tile');
  el.setAttribute('role', 'listitem');
  el.dataset.token = b.id;
  el.title = `click to watch or unwatch ${b.id}`;
  el.classList.toggle('watched', model.watched.has(b.id));
  el.addEventListener('click', () => (model.watched.has(b.id) ? unwatch(b.id) : watch(b.id)));
  const tile = { el, price: cell('div', 'p'), volume: cell('div', 'v') };
  el.append(cell('div', 't', b.id), tile.price, tile.volume);
  return tile;
}

function markTile(id) {
  const b = model.batch.get(id);
  if (b && b.tile) b.tile.el.classList.toggle('watched', model.watched.has(id));
}

// ---- connection state and figures --------------------------------------

/** The badge: connecting, live, reconnecting in N s, stopped. */
function showState(info) {
  const box = $('conn');
  const text = $('conn-text');
  switch (info.phase) {
    case 'connecting':
    case 'handshaking':
    case 'subscribing':
      box.dataset.state = 'connecting';
      text.textContent = 'connecting…';
      break;
    case 'live':
      box.dataset.state = 'live';
      text.textContent = 'live';
      break;
    case 'backing_off': {
      box.dataset.state = 'reconnecting';
      const seconds = Math.max(0, (info.retryAt - nowMs()) / 1000);
      text.textContent = `reconnecting in ${seconds.toFixed(1)} s`;
      break;
    }
    case 'no_token':
      box.dataset.state = 'stopped';
      text.textContent = 'no token';
      break;
    default:
      box.dataset.state = 'stopped';
      text.textContent = info.phase;
  }
  $('server-id').textContent = info.serverId || '';
}

function drawFigures() {
  const now = nowMs();
  $('stat-rate').textContent = fmt.count(Math.round(rate.rate(now)));
  const lat = latencies.summary(now);
  $('stat-p50').textContent = fmt.latency(lat.p50);
  $('stat-p99').textContent = fmt.latency(lat.p99);
  if (client) {
    const c = client.counters;
    $('stat-dups').textContent = fmt.count(c.duplicates);
    $('stat-events').textContent = fmt.count(c.events);
    $('stat-reconnects').textContent = fmt.count(Math.max(0, c.connections - 1));
    if (client.phase === 'backing_off') showState(client.stateInfo());
  }
  const m = model.market;
  if (m) {
    $('stat-market').textContent =
      `volume ${fmt.volume(m.totalVolume24h)} · trades ${fmt.count(m.totalTrades24h)} · ${fmt.count(m.activeTokens)} active tokens`;
  }
}

// ---- log ----------------------------------------------------------------

function log(text, level = 'info') {
  const list = $('log');
  const item = cell('li', level === 'warn' ? 'warn' : '');
  item.append(cell('time', '', fmt.clock(Date.now())), document.createTextNode(text));
  list.prepend(item);
  while (list.childElementCount > MAX_LOG) list.lastElementChild.remove();
}

// ---- wiring -------------------------------------------------------------

function init() {
  const css = getComputedStyle(document.documentElement);
  flashColours.up = css.getPropertyValue('--up-flash').trim();
  flashColours.down = css.getPropertyValue('--down-flash').trim();

  $('ws-url').value = settings.ws;
  $('token').value = settings.token;
  $('settings-form').addEventListener('submit', (e) => {
    e.preventDefault();
    settings.ws = $('ws-url').value.trim();
    settings.token = $('token').value.trim();
    saveToAddress();
    startClient();
  });
  $('add-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = $('add-token');
    const id = input.value.trim();
    if (id) watch(id);
    input.value = '';
  });

  for (const id of settings.tokens) model.watched.add(id);
  // The token leaves the address bar at once.
  if (params.has('token')) saveToAddress();
  drawPrices();
  setInterval(drawFigures, FIGURES_EVERY_MS);
  startClient();
}

init();
