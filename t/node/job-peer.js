// The provider that the test.http jobs of t/060-jobs.t POST to.  Listens on
// 127.0.0.1:$PORT and says so: {"event":"listening","port":N}, or
// {"event":"error","code":...} and exits.  Exits when its standard input
// closes.
//
// Each request is printed when it arrives:
//   {"event":"request","job":"42","attempt":1,"n":..,"t":ms,"status":200}
// and answered, after payload.delay ms (or payload.delays[attempt - 1]),
// with payload.answers[attempt - 1] (the last one past the end; 200 when
// none); a 429 carries "Retry-After: payload.retryAfter".  The payload is
// the request's body, as the job has it.
'use strict';

const http = require('http');

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const pick = (list, i, dflt) =>
    Array.isArray(list) && list.length ? list[Math.min(i, list.length - 1)]
                                       : dflt;

const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
        let payload = {};
        try { payload = JSON.parse(Buffer.concat(chunks).toString()); }
        catch (e) { payload = {}; }
        const attempt = Number(req.headers['x-orbit-attempt'] || 0);
        const status = pick(payload.answers, attempt - 1, 200);
        const delay = pick(payload.delays, attempt - 1, payload.delay || 0);
        out({ event: 'request', job: req.headers['x-orbit-job'] || null,
              attempt, n: payload.n ?? null, t: Date.now(), status });
        const headers = { 'Content-Type': 'text/plain' };
        if (status === 429 && payload.retryAfter !== undefined)
            headers['Retry-After'] = String(payload.retryAfter);
        setTimeout(() => {
            if (res.destroyed) return;
            res.writeHead(status, headers);
            res.end(status < 300 ? 'accepted' : 'refused by the peer');
        }, delay);
    });
    req.on('error', () => {});
    res.on('error', () => {});
});

server.keepAliveTimeout = 60000;
server.on('error', (e) => {
    out({ event: 'error', code: e.code });
    process.exit(1);
});
server.listen(Number(process.env.PORT), '127.0.0.1', () =>
    out({ event: 'listening', port: server.address().port }));

process.stdin.on('data', () => {});
process.stdin.on('end', () => process.exit(0));
