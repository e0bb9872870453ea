// Unit tests of the page's protocol and metrics modules, with a fake
// WebSocket and Node's mock timers: `node --test client/test/`.
// (The harness runs them: harness/tests/it/browser/modules.rs.)

import { test, mock } from 'node:test';
import assert from 'node:assert/strict';

import { Backoff, DedupWindow, OdinClient, defaultWsUrl, tokenExpMs, withProtocol, withToken } from '../odin-client.js';
import { LatencyWindow, RateMeter } from '../metrics.js';
import * as fmt from '../format.js';

/** A WebSocket double: records what the client sends, lets the test play
 *  the server. */
class FakeSocket {
  static all = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeSocket.all.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close(code = 1000) {
    this.readyState = 3;
    this.closedWith = code;
  }
  // ---- server side ----
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  receive(msg) {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }
  drop(code = 1006, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  /** Opens, says hello and answers the handshake's subscribe. */
  handshake() {
    this.open();
    this.receive({
      type: 'connection_established',
      clientId: 'c1',
      serverId: 's1',
      protocolVersion: 1,
      heartbeatIntervalMs: 30000,
      timestamp: Date.now(),
      nonce: `hello-${FakeSocket.all.length}`,
    });
    const sub = this.sent.at(-1);
    assert.equal(sub.type, 'subscribe');
    this.receive({ type: 'subscribed', channels: sub.channels, id: sub.id, timestamp: Date.now(), nonce: `ack-${sub.id}` });
    return sub;
  }
}

function price(tokenId, value, nonce, timestamp = Date.now()) {
  return { type: 'price_update', tokenId, price: value, source: 'trade', timestamp, nonce };
}

function newClient(options = {}) {
  FakeSocket.all = [];
  const seen = { events: [], duplicates: [], states: [] };
  let tokens = 0;
  const client = new OdinClient({
    url: 'ws://odin.test:8080/ws',
    token: () => `jwt-${++tokens}`,
    channels: ['batch', 'token.BTC'],
    WebSocketImpl: FakeSocket,
    random: () => 1, // the largest delay the policy allows
    ...options,
  });
  client.on('event', (msg, latency, snapshot) => seen.events.push({ msg, latency, snapshot }));
  client.on('duplicate', (msg) => seen.duplicates.push(msg));
  client.on('state', (s) => seen.states.push(s.phase));
  return { client, seen };
}

test('back-off ceilings double up to the cap, with full jitter, and reset', () => {
  const b = new Backoff(250, 1000);
  const ceilings = [];
  for (let i = 0; i < 5; i++) {
    ceilings.push(b.ceiling());
    const d = b.nextDelay();
    assert.ok(d >= 0 && d <= ceilings.at(-1));
  }
  assert.deepEqual(ceilings, [250, 500, 1000, 1000, 1000]);
  assert.equal(b.nextDelay(() => 0), 0, 'full jitter reaches zero');
  b.reset();
  assert.equal(b.ceiling(), 250);
});

test('the de-dup window is bounded in count and in time', () => {
  const w = new DedupWindow(1000, 3);
  assert.ok(w.observe('a', 0));
  assert.ok(!w.observe('a', 10));
  w.observe('b', 20);
  w.observe('c', 30);
  w.observe('d', 40); // evicts the oldest, a
  assert.equal(w.size, 3);
  assert.ok(w.observe('a', 50), 'a was forgotten when d came');
  assert.ok(w.observe('b', 2000), 'b expired after the ttl');
});

test('connects with the token, subscribes to every channel, goes live', () => {
  const { client, seen } = newClient();
  client.start();
  const ws = FakeSocket.all[0];
  assert.equal(new URL(ws.url).searchParams.get('token'), 'jwt-1');
  const sub = ws.handshake();
  assert.deepEqual(sub.channels, ['batch', 'token.BTC']);
  assert.equal(client.phase, 'live');
  assert.deepEqual(seen.states, ['connecting', 'handshaking', 'subscribing', 'live']);
  client.stop();
});

test('hands each nonce over once and counts the duplicates', () => {
  const { client, seen } = newClient();
  client.start();
  const ws = FakeSocket.all[0];
  ws.handshake();
  ws.receive(price('BTC', 1, 'n1'));
  ws.receive(price('BTC', 1, 'n1'));
  ws.receive({ type: 'heartbeat', serverId: 's1', timestamp: Date.now(), nonce: 'hb' });
  ws.receive({ type: 'trade_executed', tokenId: 'BTC', tradeId: 't', side: 'buy', price: 1, amount: 2, timestamp: Date.now(), nonce: 'n2' });
  assert.deepEqual(seen.events.map((e) => e.msg.nonce), ['n1', 'n2']);
  assert.equal(client.counters.duplicates, 1);
  client.stop();
});

test('reconnects after a back-off, with a fresh token, re-subscribing to the current set', () => {
  mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  try {
    const { client, seen } = newClient({ backoffBaseMs: 100, backoffCapMs: 400 });
    client.start();
    let ws = FakeSocket.all[0];
    ws.handshake();
    client.subscribe(['token.ETH']);
    client.unsubscribe(['batch']);
    assert.deepEqual(ws.sent.at(-2), { type: 'subscribe', channels: ['token.ETH'], id: ws.sent.at(-2).id });
    assert.equal(ws.sent.at(-1).type, 'unsubscribe');

    ws.drop(1001, 'going away');
    assert.equal(client.phase, 'backing_off');
    // Failed attempts while the server is down: 100, 200, 400, 400 ms ceilings.
    for (const ceiling of [100, 200, 400, 400]) {
      mock.timers.tick(ceiling);
      ws = FakeSocket.all.at(-1);
      assert.equal(client.phase, 'connecting');
      ws.drop(1006);
    }
    mock.timers.tick(400);
    ws = FakeSocket.all.at(-1);
    assert.equal(new URL(ws.url).searchParams.get('token'), `jwt-${FakeSocket.all.length}`);
    const sub = ws.handshake();
    assert.deepEqual(sub.channels, ['token.BTC', 'token.ETH']);
    assert.equal(client.counters.connections, 2);
    assert.ok(seen.states.includes('backing_off'));
    client.stop();
  } finally {
    mock.timers.reset();
  }
});

test('drops the snapshot of a price already shown, even once the window forgot it', () => {
  mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  try {
    const { client, seen } = newClient({ dedupCapacity: 1 });
    client.start();
    FakeSocket.all[0].handshake();
    const old = Date.now() - 5000;
    FakeSocket.all[0].receive(price('BTC', 10, 'p1', old));
    FakeSocket.all[0].receive({ type: 'market_stats', totalVolume24h: 1, totalTrades24h: 1, activeTokens: 1, timestamp: Date.now(), nonce: 'm1' });
    FakeSocket.all[0].drop(1006);
    mock.timers.tick(250);
    const ws = FakeSocket.all[1];
    ws.handshake();
    ws.receive(price('BTC', 10, 'p1', old)); // the snapshot: same event
    ws.receive(price('BTC', 11, 'p2'));
    assert.deepEqual(seen.events.map((e) => e.msg.nonce), ['p1', 'm1', 'p2']);
    assert.equal(seen.duplicates.length, 1);
    client.stop();
  } finally {
    mock.timers.reset();
  }
});

test('marks the re-sent latest price after subscribed as a snapshot', () => {
  const { client, seen } = newClient();
  client.start();
  const ws = FakeSocket.all[0];
  ws.open();
  ws.receive({ type: 'connection_established', clientId: 'c', serverId: 's', protocolVersion: 1, heartbeatIntervalMs: 30000, timestamp: 1, nonce: 'h' });
  const sub = ws.sent.at(-1);
  ws.receive({ type: 'subscribed', channels: sub.channels, id: sub.id, timestamp: 2000, nonce: 'a' });
  ws.receive(price('BTC', 5, 's1', 1500)); // created before the answer
  ws.receive(price('BTC', 6, 'l1', 2500)); // live
  assert.deepEqual(seen.events.map((e) => e.snapshot), [true, false]);
  client.stop();
});

test('asks for version 2 and waits a reconnect advisory\'s delay, capped, as no failure', () => {
  mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  try {
    const { client } = newClient({ backoffBaseMs: 100, backoffCapMs: 5000 });
    const delays = [];
    client.on('state', (s) => s.phase === 'backing_off' && delays.push(s.delayMs));
    client.start();
    const first = FakeSocket.all[0];
    assert.equal(new URL(first.url).searchParams.get('protocol'), '2');
    first.handshake();
    first.receive({ type: 'reconnect', reason: 'shutdown', delayMs: 1234, timestamp: Date.now(), nonce: 'r1' });
    first.drop(1001);
    assert.deepEqual(delays, [1234]);
    assert.equal(client.backoff.failures, 0, 'an announced close is no failure');
    mock.timers.tick(1233);
    assert.equal(FakeSocket.all.length, 1, 'not back before the advised delay');
    mock.timers.tick(1);
    assert.equal(FakeSocket.all.length, 2);
    // A huge delay is capped; the next unannounced close backs off again.
    const second = FakeSocket.all[1];
    second.handshake();
    second.receive({ type: 'reconnect', reason: 'lifetime', delayMs: 1e12, timestamp: Date.now(), nonce: 'r2' });
    second.drop(4003);
    assert.deepEqual(delays, [1234, 5000]);
    mock.timers.tick(5000);
    FakeSocket.all[2].handshake();
    FakeSocket.all[2].drop(1006);
    assert.deepEqual(delays, [1234, 5000, 100], 'random() = 1: the first ceiling');
    client.stop();
  } finally {
    mock.timers.reset();
  }
});

test('a handshake that stalls counts as a failed attempt', () => {
  mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  try {
    const { client } = newClient({ handshakeTimeoutMs: 1000 });
    client.start();
    FakeSocket.all[0].open();
    mock.timers.tick(1000);
    assert.equal(client.phase, 'backing_off');
    assert.equal(FakeSocket.all[0].closedWith, 4000);
    client.stop();
  } finally {
    mock.timers.reset();
  }
});

test('defaults and URLs', () => {
  assert.equal(defaultWsUrl({ protocol: 'http:', hostname: 'example.org' }), 'ws://example.org:8080/ws');
  assert.equal(defaultWsUrl({ protocol: 'https:', hostname: '::1' }), 'wss://[::1]:8080/ws');
  assert.equal(defaultWsUrl({ protocol: 'file:', hostname: '' }), 'ws://127.0.0.1:8080/ws');
  assert.equal(withToken('ws://h:1/ws?x=1', 'a b&'), 'ws://h:1/ws?x=1&token=a+b%26');
  assert.equal(withProtocol('ws://h:1/ws'), 'ws://h:1/ws?protocol=2');
});

test('latency percentiles cover the last minute only, within 2 %', () => {
  const w = new LatencyWindow(60);
  const t0 = 1_000_000;
  for (let i = 1; i <= 100; i++) w.record(i, t0); // 1..100 ms
  const s = w.summary(t0 + 500);
  assert.equal(s.count, 100);
  assert.ok(Math.abs(s.p50 - 50) / 50 <= 0.02, `p50 ${s.p50}`);
  assert.ok(Math.abs(s.p99 - 99) / 99 <= 0.02, `p99 ${s.p99}`);
  assert.equal(w.summary(t0 + 61_000).count, 0);
});

test('messages per second over a sliding window', () => {
  const r = new RateMeter(250, 8); // 2 s window
  for (let t = 0; t < 2000; t += 10) r.add(1, 10_000 + t);
  assert.equal(r.rate(11_999), 100);
  assert.equal(r.rate(20_000), 0);
});

test('formatting', () => {
  assert.equal(fmt.price(65432.109), '65,432.11');
  assert.equal(fmt.price(0.0000123456789), '0.0000123457');
  assert.equal(fmt.percent(-0.001), '0.00 %');
  assert.equal(fmt.percent(1.234), '+1.23 %');
  assert.equal(fmt.volume(1_234_567), '1.23M');
  assert.equal(fmt.latency(0.4), '0.40 ms');
});

/** An unsigned JWT-shaped token whose `exp` is `expSecs` (the client never checks signatures). */
function jwtWithExp(expSecs) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'HS256' })}.${b64({ sub: 'page', exp: expSecs })}.sig`;
}

test('refreshes its token ahead of the expiry, then again before the new one', () => {
  mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  try {
    const exp = Math.floor(Date.now() / 1000) + 3;
    let minted = 0;
    const { client } = newClient({
      refreshAheadMs: 1000,
      token: () => {
        minted += 1;
        return jwtWithExp(exp + 60 * (minted - 1));
      },
    });
    assert.equal(tokenExpMs(jwtWithExp(exp)), exp * 1000);
    assert.equal(tokenExpMs('not-a-jwt'), 0);
    client.start();
    const ws = FakeSocket.all[0];
    ws.handshake();
    const sent = () => ws.sent.filter((m) => m.type === 'refresh');
    assert.equal(sent().length, 0);
    mock.timers.tick(3000); // past exp - 1 s
    assert.equal(sent().length, 1);
    assert.equal(tokenExpMs(sent()[0].token), (exp + 60) * 1000, 'a fresh token from the source');
    ws.receive({ type: 'refreshed', exp: exp + 60, id: sent()[0].id, timestamp: Date.now(), nonce: 'r1' });
    mock.timers.tick(30_000);
    assert.equal(sent().length, 1, 'the next refresh waits for the new exp');
    mock.timers.tick(33_000); // past the new exp - 1 s
    assert.equal(sent().length, 2);
    assert.equal(client.phase, 'live');
    client.stop();
  } finally {
    mock.timers.reset();
  }
});

test('without refreshAheadMs it never sends refresh', () => {
  mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  try {
    const { client } = newClient({ token: () => jwtWithExp(Math.floor(Date.now() / 1000) + 2) });
    client.start();
    const ws = FakeSocket.all[0];
    ws.handshake();
    mock.timers.tick(10_000);
    assert.equal(ws.sent.filter((m) => m.type === 'refresh').length, 0);
    client.stop();
  } finally {
    mock.timers.reset();
  }
});
