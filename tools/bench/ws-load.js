// The load generator of `tools/orbit bench ws`: N WebSocket clients of one
// server, bursts of events published to all of them, and the server's own
// cost of delivering them.
//
//   node ws-load.js --proto sio|raw --url WS_URL --clients N --procs K
//        --pids PID,.. [--extra-pids PID,.. --extra-name NAME]
//        --publish SPEC --prefix NAME
//        [--events E] [--bursts B] [--pace MS] [--token JWT] [--hz CLK_TCK]
//
//   --proto sio: Engine.IO 4 / Socket.IO 5 over raw `ws` (open packet,
//     40/chat,{"token":..}, "2" answered "3"); every 42/chat,[...] counts.
//   --proto raw: plain WebSocket (nchan): every text frame counts.
//   --publish redis:HOST:PORT:CHANNEL   PUBLISH "<id>\n\n\n<event>\n<json>" (id, from, to, name, data)
//   --publish http:HOST:PORT:/PATH      POST PATH, the event's JSON as body
//     Either way one TCP connection, every event of a burst written at once
//     (pipelined), each stamped with its own send time: the server fans
//     them out as fast as it can.
//
// The clients are split over K child processes (ulimit -n).  Each event's
// data carries its burst and its send time (CLOCK_MONOTONIC, the same in
// every process); a client's delivery latency is its receive time minus
// that.  The server's CPU is utime+stime of --pids from /proc/PID/stat
// over each burst; its memory, the sum of their VmRSS with N idle clients
// minus before any.  Prints "PREFIX_name: value" lines.
//
// --pace MS adds one more burst whose events go out MS apart: one at a time,
// so that a server cannot write several events to a socket at once.
'use strict';

const path = require('path');
const fs = require('fs');
const net = require('net');
const { fork } = require('child_process');
const WebSocket = require(path.join(__dirname, '..', '..', 't', 'node',
  'node_modules', 'ws'));

const nowUs = () => Number(process.hrtime.bigint()) / 1e3;

function args(argv) {
  const o = {};
  for (let i = 0; i < argv.length; i++) {
    if (argv[i].startsWith('--')) {
      const k = argv[i].slice(2);
      const v = argv[i + 1] && !argv[i + 1].startsWith('--') ? argv[++i] : '1';
      o[k] = v;
    }
  }
  return o;
}

// latency histogram: 10 µs buckets below 100 ms, 1 ms buckets up to 100 s
const HIST = 10000 + 100000 + 1;
function bucket(ms) {
  if (ms < 0) ms = 0;
  if (ms < 100) return Math.floor(ms * 100);
  return Math.min(10000 + Math.floor(ms - 100), HIST - 1);
}
function bucketMs(i) {
  return i < 10000 ? (i + 0.5) / 100 : 100 + (i - 10000) + 0.5;
}

// ------------------------------------------------------------- a child

function child(o) {
  const n = Number(o.clients);
  const sio = o.proto === 'sio';
  const connectMsg = '40/chat,' + JSON.stringify(o.token ? { token: o.token } : {});
  const sockets = [];
  let connected = 0, failed = 0, opening = 0, next = 0;
  let firstError = '';
  let burst = -1, expect = 0, got = 0, lastRecv = 0, cpu0 = null;
  let hist = new Uint32Array(HIST);
  let doneSent = true;
  let closing = false;

  const send = (m) => { if (process.connected) process.send(m); };

  function deliver(buf, off) {
    // {"b":B,"t":T,...}: found by position, no JSON.parse per delivery
    const s = buf.toString('latin1', off, Math.min(buf.length, off + 64));
    const bi = s.indexOf('"b":');
    const ti = s.indexOf('"t":');
    if (bi < 0 || ti < 0) return;
    const b = parseInt(s.slice(bi + 4), 10);
    if (b !== burst) return;
    const t = parseFloat(s.slice(ti + 4));
    const now = nowUs();
    hist[bucket((now - t) / 1000)]++;
    lastRecv = now;
    if (++got === expect) finish();
  }

  function finish() {
    if (doneSent) return;
    doneSent = true;
    const pairs = [];
    for (let i = 0; i < HIST; i++) if (hist[i]) pairs.push(i, hist[i]);
    const cpu = process.cpuUsage(cpu0);
    send({ type: 'done', burst, got, lastRecv, hist: pairs,
           cpuUs: cpu.user + cpu.system });
  }

  function settled() {
    if (connected + failed === n) {
      send({ type: 'ready', connected, failed, error: firstError });
    }
  }

  function open() {
    while (opening < 64 && next < n) {
      next++;
      opening++;
      let up = false;
      const ws = new WebSocket(o.url, { perMessageDeflate: false });
      sockets.push(ws);
      const ok = () => {
        if (up) return;
        up = true; opening--; connected++;
        settled(); open();
      };
      const ko = (why) => {
        if (up) {
          if (!closing) { firstError = firstError || why; }
          return;
        }
        up = true; opening--; failed++;
        firstError = firstError || why;
        settled(); open();
      };
      ws.on('error', (e) => ko(String(e.message || e)));
      ws.on('close', (code) => ko('closed ' + code));
      if (!sio) {
        ws.on('open', ok);
        ws.on('message', (buf) => deliver(buf, 0));
        continue;
      }
      ws.on('message', (buf) => {
        const c0 = buf[0];
        if (c0 === 0x34) {                       // '4': a Socket.IO packet
          const c1 = buf[1];
          if (c1 === 0x32) {                     // 42/chat,["e",{...},"id"]
            const i = buf.indexOf(0x7b);         // '{'
            if (i > 0) deliver(buf, i);
          } else if (c1 === 0x30) {
            ok();                                // 40/chat,{"sid":..}
          } else if (c1 === 0x34) {
            ko('refused: ' + buf.toString());    // 44/chat,{"message":..}
          }
        } else if (c0 === 0x32 && buf.length === 1) {
          ws.send('3');                          // ping -> pong
        } else if (c0 === 0x30) {
          ws.send(connectMsg);                   // 0{"sid":..}: open
        }
      });
    }
  }

  process.on('message', (m) => {
    if (m.type === 'burst') {
      burst = m.burst;
      expect = connected * m.events;
      got = 0;
      lastRecv = 0;
      hist = new Uint32Array(HIST);
      cpu0 = process.cpuUsage();
      doneSent = false;
      if (expect === 0) finish();
    } else if (m.type === 'flush') {
      finish();                                  // the master gave up waiting
    } else if (m.type === 'close') {
      closing = true;
      for (const ws of sockets) ws.terminate();
      setTimeout(() => process.exit(0), 100);
    }
  });
  process.on('disconnect', () => process.exit(0));
  open();
  if (n === 0) settled();
}

// ------------------------------------------------------------ the master

function readProc(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields 14 and 15 of stat(5); f[0] is field 3
  const ticks = Number(f[11]) + Number(f[12]);
  const status = fs.readFileSync(`/proc/${pid}/status`, 'latin1');
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  const a = /RssAnon:\s+(\d+) kB/.exec(status);
  return { ticks, rssKb: m ? Number(m[1]) : 0, anonKb: a ? Number(a[1]) : 0 };
}

function sample(pids, hz) {
  let us = 0, rssKb = 0, anonKb = 0;
  for (const pid of pids) {
    const p = readProc(pid);
    us += p.ticks * 1e6 / hz;
    rssKb += p.rssKb;
    anonKb += p.anonKb;
  }
  return { us, rssKb, anonKb };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// one TCP connection; write(events) pipelines them all, resolves once every
// answer is in.  For Redis an answer is a RESP integer; for HTTP a status
// line (counted, not parsed: the answers are small and Content-Length'd).
function publisher(spec) {
  const [kind, host, port, ...rest] = spec.split(':');
  const target = rest.join(':');
  const sock = net.connect(Number(port), host);
  sock.setNoDelay(true);
  let pending = 0, answered = 0, bad = '', waiter = null, tail = '';
  const check = () => {
    if (waiter && answered >= pending) { const w = waiter; waiter = null; w(); }
  };
  sock.on('data', (d) => {
    const s = tail + d.toString('latin1');
    if (kind === 'redis') {
      const lines = s.split('\r\n');
      tail = lines.pop();
      for (const l of lines) {
        if (l[0] === ':') answered++;
        else if (l[0] === '-') { answered++; bad = bad || l; }
      }
    } else {
      let i = 0, j;
      while ((j = s.indexOf('HTTP/1.1 ', i)) >= 0) {
        if (j + 12 > s.length) break;
        const code = s.slice(j + 9, j + 12);
        if (code[0] !== '2') bad = bad || 'HTTP ' + code;
        answered++;
        i = j + 12;
      }
      tail = s.slice(Math.max(i, s.length - 12));
    }
    check();
  });
  const ready = new Promise((res, rej) => {
    sock.once('connect', res);
    sock.once('error', rej);
  });
  sock.on('error', (e) => { bad = bad || String(e.message); answered = 1e12; check(); });

  function frame(name, id, json) {
    if (kind === 'redis') {
      const payload = Buffer.from(`${id}\n\n\n${name}\n${json}`);
      const ch = Buffer.from(target);
      return Buffer.concat([
        Buffer.from(`*3\r\n$7\r\nPUBLISH\r\n$${ch.length}\r\n`), ch,
        Buffer.from(`\r\n$${payload.length}\r\n`), payload,
        Buffer.from('\r\n')]);
    }
    const sep = target.includes('?') ? '&' : '?';
    const body = Buffer.from(json);
    return Buffer.concat([Buffer.from(
      `POST ${target}${sep}id=${id} HTTP/1.1\r\nHost: ${host}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${body.length}` +
      '\r\n\r\n'), body]);
  }

  return {
    ready,
    // every event at once, or one each paceMs
    async burst(b, events, paceMs) {
      const done = new Promise((r) => { waiter = r; });
      pending += events;
      const base = Date.now();
      for (let n = 0; n < events; n++) {
        if (paceMs && n) await sleep(paceMs);
        const json = `{"b":${b},"t":${nowUs().toFixed(1)},"n":${n},` +
                     '"text":"an event of the fan-out benchmark"}';
        sock.write(frame('bench', `${base}-${n}`, json));
      }
      check();
      await done;
      if (bad) throw new Error('publishing: ' + bad);
    },
    close() { sock.destroy(); },
  };
}

async function master(o) {
  const clients = Number(o.clients || 1000);
  const procs = Math.max(1, Number(o.procs || Math.ceil(clients / 5000)));
  const events = Number(o.events || 200);
  const bursts = Number(o.bursts || 5);
  const hz = Number(o.hz || 100);
  const prefix = o.prefix || 'ws';
  const pids = String(o.pids).split(',').filter(Boolean).map(Number);
  const extra = String(o['extra-pids'] || '').split(',').filter(Boolean)
    .map(Number);
  const limitMs = Number(o.timeout || 30000);   // per burst, per connect
  const paceMs = Number(o.pace || 0);
  const out = (k, v) => process.stdout.write(`${prefix}_${k}: ${v}\n`);
  const log = (m) => process.stderr.write(`ws-load ${prefix}: ${m}\n`);

  const cold = sample(pids, hz);
  const pub = publisher(o.publish);
  await pub.ready;

  // a few clients first, one event to them, gone again: the pages of code
  // that serving them reads (the server's and its libraries') are resident
  // in "before", not counted as the connections' memory
  {
    const w = fork(__filename, ['--child', '--proto', o.proto, '--url', o.url,
      '--clients', '10', ...(o.token ? ['--token', o.token] : [])],
      { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const next = () => new Promise((res, rej) => {
      const t = setTimeout(() => rej(new Error('warming up: timeout')), limitMs);
      w.once('message', (m) => { clearTimeout(t); res(m); });
    });
    const r = await next();
    if (r.failed) { w.kill(); throw new Error(`warming up: ${r.error}`); }
    w.send({ type: 'burst', burst: -1, events: 1 });
    await sleep(50);
    await pub.burst(-1, 1, 0);
    await next();
    const gone = new Promise((res) => w.once('exit', res));
    w.send({ type: 'close' });
    await gone;
    await sleep(1000);
  }
  const before = sample(pids, hz);

  // the clients
  const kids = [];
  const per = Math.ceil(clients / procs);
  for (let i = 0; i < procs; i++) {
    const n = Math.min(per, clients - i * per);
    const argv = ['--child', '--proto', o.proto, '--url', o.url,
                  '--clients', String(n)];
    if (o.token) argv.push('--token', o.token);
    kids.push(fork(__filename, argv, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  }
  let stopping = false;
  const inbox = kids.map(() => []);
  const waiters = kids.map(() => null);
  kids.forEach((k, i) => {
    k.on('message', (m) => {
      if (waiters[i]) { const w = waiters[i]; waiters[i] = null; w(m); }
      else inbox[i].push(m);
    });
    k.on('exit', (code) => {
      if (!stopping) { log(`a generator process exited (${code})`); process.exit(1); }
    });
  });
  const recv = (i, ms) => new Promise((res, rej) => {
    if (inbox[i].length) { res(inbox[i].shift()); return; }
    const t = setTimeout(() => { waiters[i] = null; rej(new Error('timeout')); }, ms);
    waiters[i] = (m) => { clearTimeout(t); res(m); };
  });
  const stop = () => {
    stopping = true;
    for (const k of kids) { try { k.send({ type: 'close' }); } catch (e) { /* gone */ } }
  };

  const t0 = Date.now();
  let connected = 0;
  try {
    const ready = await Promise.all(kids.map((k, i) =>
      recv(i, Math.max(limitMs, clients * 5))));
    for (const r of ready) {
      connected += r.connected;
      if (r.failed) throw new Error(`${r.failed} clients failed: ${r.error}`);
    }
  } catch (e) {
    stop();
    throw new Error(`connecting: ${e.message}`);
  }
  const connectS = (Date.now() - t0) / 1000;

  // idle: let the server settle (a node server's heap, say), then its RSS
  await sleep(2000);
  const idle = sample(pids, hz);

  // one phase: bursts of events, all of them measured together
  async function phase(first, count, ev, paceMs) {
    const r = { hist: new Uint32Array(HIST), deliveries: 0, lost: 0,
                busyUs: 0, serverUs: 0, extraUs: 0, loadgenUs: 0 };
    for (let b = first; b < first + count; b++) {
      kids.forEach((k) => k.send({ type: 'burst', burst: b, events: ev }));
      await sleep(50);
      const s0 = sample(pids, hz);
      const x0 = sample(extra, hz);
      const start = nowUs();
      await pub.burst(b, ev, paceMs);
      const done = await Promise.all(kids.map(async (k, i) => {
        try {
          return await recv(i, limitMs);
        } catch (e) {
          k.send({ type: 'flush' });
          return recv(i, 5000);
        }
      }));
      const s1 = sample(pids, hz);
      const x1 = sample(extra, hz);
      let last = start;
      for (const d of done) {
        r.deliveries += d.got;
        last = Math.max(last, d.lastRecv);
        r.loadgenUs += d.cpuUs;
        for (let j = 0; j < d.hist.length; j += 2) {
          r.hist[d.hist[j]] += d.hist[j + 1];
        }
      }
      r.lost = connected * ev * (b - first + 1) - r.deliveries;
      r.busyUs += last - start;
      r.serverUs += s1.us - s0.us;
      r.extraUs += x1.us - x0.us;
      await sleep(300);
    }
    const per = (us) => (us / Math.max(r.deliveries, 1)).toFixed(2);
    const pct = (p) => {
      const want = Math.ceil(r.deliveries * p);
      let c = 0;
      for (let i = 0; i < HIST; i++) {
        c += r.hist[i];
        if (c >= want) return bucketMs(i).toFixed(2);
      }
      return 'NaN';
    };
    let sum = 0, max = 0;
    for (let i = 0; i < HIST; i++) {
      if (r.hist[i]) { sum += r.hist[i] * bucketMs(i); max = bucketMs(i); }
    }
    r.p50 = pct(0.5);
    r.p99 = pct(0.99);
    r.mean = (sum / Math.max(r.deliveries, 1)).toFixed(2);
    r.max = max.toFixed(2);
    r.perS = Math.round(r.deliveries / (r.busyUs / 1e6));
    r.us = per(r.serverUs);
    r.extra = per(r.extraUs);
    r.loadgen = per(r.loadgenUs);
    return r;
  }

  await phase(0, 1, Math.min(events, 20), 0);     // warming up (JIT, buffers)
  const B = await phase(1, bursts, events, 0);
  // one event at a time, paceMs apart: nothing to coalesce
  const P = paceMs ? await phase(1000, 1, events, paceMs) : null;
  pub.close();

  out('connected_clients', connected);
  out('connect_seconds', connectS.toFixed(1));
  out('events_per_burst', events);
  out('bursts', bursts);
  out('deliveries', B.deliveries);
  out('lost_deliveries', B.lost);
  out('fanout_p50_ms', B.p50);
  out('fanout_p99_ms', B.p99);
  out('fanout_mean_ms', B.mean);
  out('fanout_max_ms', B.max);
  out('deliveries_per_s', B.perS);
  out('us_per_delivery', B.us);
  const xname = o['extra-name'] || 'extra';
  if (extra.length) out(`${xname}_us_per_delivery`, B.extra);
  out('loadgen_us_per_delivery', B.loadgen);
  out('rss_before_kb', before.rssKb);
  out('rss_idle_kb', idle.rssKb);
  out('mem_per_1k_conns_kb',
      ((idle.rssKb - before.rssKb) / (connected / 1000)).toFixed(0));
  // from before the warm-up: with the pages of code first read
  out('mem_cold_per_1k_conns_kb',
      ((idle.rssKb - cold.rssKb) / (connected / 1000)).toFixed(0));
  // anonymous memory only (heap, stacks)
  out('mem_anon_per_1k_conns_kb',
      ((idle.anonKb - before.anonKb) / (connected / 1000)).toFixed(0));
  if (P) {
    out('paced_ms', paceMs);
    out('paced_lost_deliveries', P.lost);
    out('paced_p50_ms', P.p50);
    out('paced_p99_ms', P.p99);
    out('paced_us_per_delivery', P.us);
    if (extra.length) out(`paced_${xname}_us_per_delivery`, P.extra);
  }
  const lost = B.lost + (P ? P.lost : 0);

  stop();
  await sleep(300);
  if (lost) log(`${lost} deliveries did not arrive within ${limitMs} ms`);
}

const opts = args(process.argv.slice(2));
if (opts.child) {
  child(opts);
} else {
  master(opts).then(() => process.exit(0), (e) => {
    process.stderr.write(`ws-load ${opts.prefix || ''}: ${e.message}\n`);
    process.exit(1);
  });
}
