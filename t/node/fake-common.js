// What the suites' fakes of outside services share (fake-whatsapp.js,
// fake-api-peer.js; Perl side: t/lib/Orbit/Fake.pm): an HTTP server on
// 127.0.0.1:$PORT that records every request, can be told to answer the
// next ones otherwise, and can POST signed webhooks.  It says
// {"event":"listening","port":N} on stdout (or {"event":"error",...} and
// exits) and exits when its standard input closes; nothing else goes to
// stdout (a full pipe would stop the server).
//
// Control API (JSON in, JSON out; not recorded as calls):
//   POST /__control/reset    forget calls, outbox, forced answers, delay and
//                            everything the fake was configured with
//   GET  /__control/calls?since=N&path=P&method=M&outcome=O
//        {"calls":[CALL...],"next":N}: the calls from index N (default 0),
//        only those whose path starts with P, method is M, outcome is O.
//        CALL: {"index","method","path","query":{},"headers":{} (lower-case
//        names),"body":"raw, as UTF-8","size":bytes,"json":parsed|null,
//        "time":unix s (float),"outcome":"...","response":{"status",
//        "headers","body"}|null,"clientClosedAt":unix s|absent, ...}
//        outcome "forced", "hang", "close" for forced answers; the other
//        outcomes are the fake's own (see its file).
//   POST /__control/force {"responses":[FORCED...]}   -> {"pending":N}
//        queued; each request takes the first queued one that matches it.
//        FORCED: {"status":500,"body":{...}|"text","headers":{"Retry-After":
//        "3"},"delay":ms,"times":n (default 1),"path":"prefix","method":
//        "POST"} or {"hang":true} (never answered) or {"close":true} (the
//        connection dropped; "close":"reset" sends a TCP RST).  A forced
//        answer replaces the fake's processing: the request is only
//        recorded.  {"delay":ms} alone: processed as usual, answered late.
//        A fake may know more (fake-whatsapp.js: "error":131047).
//   GET  /__control/force    {"pending":[FORCED...]}
//   POST /__control/delay {"ms":N}   every answer from now on waits N ms
//        (after processing; a forced "delay" overrides it)
//   POST /__control/emit {"url","secret","payload":{...}|"raw text",
//        "payloadBase64":"bytes","signature":"sha256=..."|null,
//        "headers":{},"timeout":ms}
//        POSTs the body (an object as JSON.stringify gives it) with
//        Content-Type: application/json and X-Hub-Signature-256:
//        sha256=<hex HMAC-SHA256(secret, raw body)>; "signature" given:
//        that header instead, null: no header.  Answers {"status",
//        "headers","body","sent":{"body","signature"}} or, when the target
//        could not be reached, {"status":null,"error":"..."}.
//   GET  /__control/outbox?since=N   {"outbox":[OUT...],"next":N}: what
//        the fake POSTed (emit and its own webhooks): {"index","kind",
//        "url","body","signature","time","status","responseBody","error"}
'use strict';

const http = require('http');
const crypto = require('crypto');

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const now = () => Date.now() / 1000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function sign(secret, body) {
    return 'sha256='
        + crypto.createHmac('sha256', secret).update(body).digest('hex');
}

// constant time, as a receiver must compare
function signatureOk(secret, body, header) {
    if (typeof header !== 'string' || secret == null) return false;
    const want = Buffer.from(sign(secret, body));
    const got = Buffer.from(header);
    return want.length === got.length && crypto.timingSafeEqual(want, got);
}

function json(status, body, headers) {
    return { status, body, headers };
}

function isObject(v) {
    return v !== null && typeof v === 'object' && !Array.isArray(v);
}

class Fake {
    // opts: name, userAgent (of its webhooks), handle(call, req) -> answer
    // {status, body, headers, after()} (after: run once answered), reset(),
    // control: {"METHOD name": (body, query, req) -> answer},
    // forced(item) -> answer for a forced item (default: status, body)
    constructor(opts) {
        this.opts = opts;
        this.control = {
            'POST reset': () => this.reset(),
            'GET calls': (b, q) => this.listCalls(q),
            'POST force': (b) => this.force(b),
            'GET force': () => json(200, { pending: this.queue }),
            'POST delay': (b) => {
                this.delayMs = Number(b.ms) || 0;
                return json(200, { ms: this.delayMs });
            },
            'POST emit': (b) => this.emit(b),
            'GET outbox': (b, q) => json(200, {
                outbox: this.outbox.slice(Number(q.since) || 0),
                next: this.outbox.length,
            }),
            ...opts.control,
        };
        this.hung = new Set();
        this.reset();
    }

    reset() {
        this.calls = [];
        this.outbox = [];
        this.queue = [];
        this.delayMs = 0;
        for (const res of this.hung) res.destroy();
        this.hung.clear();
        if (this.opts.reset) this.opts.reset();
        return json(200, { reset: true });
    }

    listCalls(q) {
        const calls = this.calls.slice(Number(q.since) || 0).filter((c) =>
            (!q.path || c.path.startsWith(q.path))
            && (!q.method || c.method === q.method.toUpperCase())
            && (!q.outcome || c.outcome === q.outcome));
        return json(200, { calls, next: this.calls.length });
    }

    force(b) {
        if (!Array.isArray(b.responses)) {
            return json(400, { error: '"responses" must be an array' });
        }
        for (const r of b.responses) {
            if (!isObject(r)) return json(400, { error: 'not an object' });
            const n = r.times === undefined ? 1 : Number(r.times);
            const item = { ...r };
            delete item.times;
            for (let i = 0; i < n; i++) this.queue.push(item);
        }
        return json(200, { pending: this.queue.length });
    }

    takeForced(method, path) {
        const i = this.queue.findIndex((r) =>
            (!r.path || path.startsWith(r.path))
            && (!r.method || r.method.toUpperCase() === method));
        return i < 0 ? null : this.queue.splice(i, 1)[0];
    }

    forcedAnswer(item) {
        if (this.opts.forced) {
            const a = this.opts.forced(item);
            if (a) return a;
        }
        return { status: item.status || 200, body: item.body ?? '',
                 headers: item.headers };
    }

    // POSTs a signed body; resolves to what the control API answers
    async post(kind, o) {
        let body;
        if (typeof o.payloadBase64 === 'string') {
            body = Buffer.from(o.payloadBase64, 'base64');
        } else if (typeof o.payload === 'string') {
            body = Buffer.from(o.payload);
        } else {
            body = Buffer.from(JSON.stringify(o.payload ?? null));
        }
        const secret = o.secret ?? o.appSecret;
        let signature = o.signature;
        if (signature === undefined) {
            if (typeof secret !== 'string') {
                return { status: null, error: 'no "secret" to sign with' };
            }
            signature = sign(secret, body);
        }
        const headers = {
            'Content-Type': 'application/json',
            'Content-Length': body.length,
            'User-Agent': this.opts.userAgent || 'orbit-fake',
        };
        if (signature !== null && signature !== false) {
            headers['X-Hub-Signature-256'] = signature;
        }
        Object.assign(headers, o.headers || {});
        const entry = {
            index: this.outbox.length, kind, url: o.url,
            body: body.toString(), signature: headers['X-Hub-Signature-256']
                ?? null, time: now(), status: null,
        };
        this.outbox.push(entry);
        const r = await request(o.url, headers, body, o.timeout || 10000);
        entry.status = r.status;
        entry.responseBody = r.body;
        if (r.error) entry.error = r.error;
        return { ...r, sent: { body: entry.body,
                               signature: entry.signature } };
    }

    async emit(b) {
        if (typeof b.url !== 'string') {
            return json(400, { error: '"url" is required' });
        }
        return json(200, await this.post('emit', b));
    }

    async onRequest(req, res) {
        const raw = await readBody(req);
        const url = new URL(req.url, 'http://fake');
        const query = Object.fromEntries(url.searchParams);
        if (url.pathname.startsWith('/__control/')) {
            return this.onControl(req, res, url.pathname.slice(11), query,
                                  raw);
        }
        let parsed = null;
        try { parsed = JSON.parse(raw.toString()); } catch (e) { /* raw */ }
        const call = {
            index: this.calls.length, method: req.method,
            path: url.pathname, query, headers: req.headers,
            body: raw.toString(), size: raw.length, json: parsed,
            time: now(), outcome: null, response: null,
        };
        this.calls.push(call);
        res.on('close', () => {
            if (!res.writableFinished) call.clientClosedAt = now();
        });

        const forced = this.takeForced(req.method, url.pathname);
        const onlyDelay = forced && Object.keys(forced).every((k) =>
            ['delay', 'path', 'method'].includes(k));
        let answer;
        if (forced && !onlyDelay) {
            call.forced = forced;
            call.outcome = forced.hang ? 'hang'
                         : forced.close ? 'close' : 'forced';
        }
        if (forced && forced.hang) {
            this.hung.add(res);
            res.on('close', () => this.hung.delete(res));
            return;
        }
        if (!forced || onlyDelay) {
            answer = await this.opts.handle(call, req, raw);
            call.outcome = answer.outcome || 'answered';
        } else if (!forced.close) {
            answer = this.forcedAnswer(forced);
        }
        const delay = forced && forced.delay !== undefined
                    ? Number(forced.delay) : this.delayMs;
        if (delay > 0) await sleep(delay);
        if (forced && forced.close) {
            if (forced.close === 'reset' && req.socket.resetAndDestroy) {
                req.socket.resetAndDestroy();
            } else {
                req.socket.destroy();
            }
            return;
        }
        call.response = send(res, answer);
        if (answer.after) answer.after();
    }

    async onControl(req, res, name, query, raw) {
        const fn = this.control[`${req.method} ${name}`];
        if (!fn) {
            send(res, json(404, { error: `no control ${req.method} ${name}` }));
            return;
        }
        let b = {};
        if (raw.length) {
            try { b = JSON.parse(raw.toString()); } catch (e) {
                send(res, json(400, { error: 'not JSON: ' + e.message }));
                return;
            }
        }
        send(res, await fn(b, query, req));
    }

    listen() {
        const server = http.createServer((req, res) => {
            this.onRequest(req, res).catch((e) => {
                process.stderr.write(`${this.opts.name}: ${e.stack}\n`);
                if (!res.headersSent) {
                    send(res, json(500, { error: String(e) }));
                }
            });
        });
        server.on('error', (e) => {
            out({ event: 'error', code: e.code, message: e.message });
            process.exit(1);
        });
        server.listen(Number(process.env.PORT), '127.0.0.1', () =>
            out({ event: 'listening', port: server.address().port,
                  fake: this.opts.name }));
        process.stdin.on('end', () => process.exit(0));
        process.stdin.resume();
        return server;
    }
}

function readBody(req) {
    return new Promise((resolve, reject) => {
        const parts = [];
        req.on('data', (d) => parts.push(d));
        req.on('end', () => resolve(Buffer.concat(parts)));
        req.on('error', reject);
    });
}

// writes an answer {status, body (object: JSON; string or Buffer: as it
// is), headers}; returns what is recorded of it
function send(res, a) {
    const headers = { ...(a.headers || {}) };
    let body = a.body ?? '';
    const has = (name) => Object.keys(headers).some((k) =>
        k.toLowerCase() === name);
    if (!Buffer.isBuffer(body) && typeof body !== 'string') {
        body = JSON.stringify(body);
        if (!has('content-type')) headers['Content-Type'] = 'application/json';
    } else if (!has('content-type')) {
        headers['Content-Type'] = 'text/plain';
    }
    body = Buffer.isBuffer(body) ? body : Buffer.from(body);
    headers['Content-Length'] = body.length;
    res.writeHead(a.status, headers);
    res.end(body);
    return { status: a.status, headers, body: body.toString() };
}

function request(url, headers, body, timeout) {
    return new Promise((resolve) => {
        let done = false;
        const finish = (r) => { if (!done) { done = true; resolve(r); } };
        let req;
        try {
            req = http.request(url, { method: 'POST', headers,
                                      agent: false, timeout });
        } catch (e) {
            finish({ status: null, error: e.message });
            return;
        }
        req.on('response', (res) => {
            const parts = [];
            res.on('data', (d) => parts.push(d));
            res.on('end', () => finish({
                status: res.statusCode, headers: res.headers,
                body: Buffer.concat(parts).toString() }));
            res.on('error', (e) => finish({ status: null,
                                            error: e.message }));
        });
        req.on('timeout', () => req.destroy(new Error('timed out')));
        req.on('error', (e) => finish({ status: null,
                                        error: e.code || e.message }));
        req.end(body);
    });
}

// Graph API's error answer (WhatsApp, Messenger, Instagram): table maps
// a code to [status, title, details?]; o may set message, type, status,
// subcode, details; errorData(details) shapes error_data (WhatsApp adds
// its messaging_product).  Codes other than 190 and 2500 read "(#CODE)
// title"; 190 also answers WWW-Authenticate, as Graph does.
function graphError(table, code, o = {}, errorData = (d) => ({ details: d })) {
    const [status, title, details] = table[code] || [400, 'Error'];
    const error = {
        message: o.message
            || (code === 190 || code === 2500 ? title : `(#${code}) ${title}`),
        type: o.type || 'OAuthException',
        code,
    };
    if (o.details || details) error.error_data = errorData(o.details || details);
    if (o.subcode) error.error_subcode = o.subcode;
    error.fbtrace_id = 'A' + crypto.randomBytes(16).toString('base64url')
        .slice(0, 22);
    const headers = code === 190 ? { 'WWW-Authenticate':
        `OAuth "Facebook Platform" "invalid_token" "${error.message}"` } : {};
    return { status: o.status || status, body: { error }, headers };
}

module.exports = { Fake, json, sign, signatureOk, isObject, now, sleep,
                   graphError };
