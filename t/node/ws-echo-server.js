// A WebSocket server (the ws package) for t/007-ws-client.t, the self-test
// of t/lib/Orbit/WS.pm, and t/053-ws-client.t, the peer of nginx's client.
// Listens on 127.0.0.1:$PORT and says so on stdout:
// {"event":"listening","port":N}, or {"event":"error","code":...} and exits.
// With TLS_CERT and TLS_KEY (PEM files) it speaks TLS (wss).
// Exits when its standard input closes (the test's end, however it ends).
//   /echo        echoes each message (text as text, binary as binary); ws
//                itself answers pings and the close handshake, and closes
//                with 1002 on a protocol error
//   /frag        echoes each message in 3 fragments, a ping between the first
//                and the second
//   /hello       says "hello" at once, then echoes
//   /nopong      echoes, and answers no ping
//   /close?code=N&reason=R   closes at once with that code and reason
//   /auth        as /echo, for "Authorization: Bearer s3cret" only (else 401)
//   /bad-accept  a 101 with a wrong Sec-WebSocket-Accept
//   /upgrade-required   426 with a chunked body
//   anything else: answered as by a server that knows nothing of WebSocket,
//                a 200 and a page
// Prints {"event":"connection",...} (with the TLS server name asked for,
// servername, and some request headers), {"event":"ping"|"pong",...} and
// {"event":"close","code":...} lines.
'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');
const { WebSocketServer } = require('ws');

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const PAGE = '<html><body>not a WebSocket server</body></html>\n';

function answer(socket, status, headers, body) {
    const lines = [`HTTP/1.1 ${status}`];
    for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
    socket.end(lines.join('\r\n') + '\r\n\r\n' + body);
}

const wss = new WebSocketServer({ noServer: true });
const nopong = new WebSocketServer({ noServer: true, autoPong: false });

function connection(ws, req) {
    const url = new URL(req.url, 'http://x');
    const path = url.pathname;
    out({ event: 'connection', path, protocol: ws.protocol,
          servername: req.socket.servername || null,
          host: req.headers.host || null,
          authorization: req.headers.authorization || null,
          openai_beta: req.headers['openai-beta'] || null });
    ws.on('ping', (data) =>
        out({ event: 'ping', path, payload: data.toString() }));
    ws.on('pong', (data) =>
        out({ event: 'pong', path, payload: data.toString() }));
    if (path === '/close') {
        ws.close(Number(url.searchParams.get('code')),
                 url.searchParams.get('reason') || '');
    } else if (path === '/hello') {
        ws.send('hello');
    }
    ws.on('message', (data, isBinary) => {
        if (path !== '/frag') {
            ws.send(data, { binary: isBinary });
            return;
        }
        const third = Math.ceil(data.length / 3);
        ws.send(data.subarray(0, third), { binary: isBinary, fin: false });
        ws.ping('between');
        ws.send(data.subarray(third, 2 * third), { fin: false });
        ws.send(data.subarray(2 * third), { fin: true });
    });
    ws.on('close', (code, reason) =>
        out({ event: 'close', path, code, reason: reason.toString() }));
    ws.on('error', (e) =>
        out({ event: 'ws-error', path, message: e.message, code: e.code }));
}

wss.on('connection', connection);
nopong.on('connection', connection);

const tls = process.env.TLS_CERT
    ? { cert: fs.readFileSync(process.env.TLS_CERT),
        key: fs.readFileSync(process.env.TLS_KEY) }
    : null;

const page = (req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end(PAGE);
};

const server = tls ? https.createServer(tls, page)
                   : http.createServer(page);

server.on('upgrade', (req, socket, head) => {
    const path = req.url.split('?')[0];
    const authorized = req.headers.authorization === 'Bearer s3cret';
    if (path === '/echo' || path === '/frag' || path === '/hello'
        || path === '/close' || (path === '/auth' && authorized)) {
        wss.handleUpgrade(req, socket, head,
                          (ws) => wss.emit('connection', ws, req));
    } else if (path === '/nopong') {
        nopong.handleUpgrade(req, socket, head,
                             (ws) => nopong.emit('connection', ws, req));
    } else if (path === '/auth') {
        const body = '{"statusCode":401,"message":"Unauthorized"}';
        answer(socket, '401 Unauthorized', {
            'Content-Type': 'application/json',
            'Content-Length': Buffer.byteLength(body), Connection: 'close',
        }, body);
    } else if (path === '/bad-accept') {
        answer(socket, '101 Switching Protocols', {
            Upgrade: 'websocket', Connection: 'Upgrade',
            'Sec-WebSocket-Accept': 'AAAAAAAAAAAAAAAAAAAAAAAAAAA=',
        }, '');
    } else if (path === '/upgrade-required') {
        const part = 'Upgrade Required';
        answer(socket, '426 Upgrade Required', {
            'Content-Type': 'text/plain', 'Transfer-Encoding': 'chunked',
            'Sec-WebSocket-Version': '13', Connection: 'close',
        }, `6\r\n${part.slice(0, 6)}\r\n${(part.length - 6).toString(16)}`
           + `\r\n${part.slice(6)}\r\n0\r\n\r\n`);
    } else {
        answer(socket, '200 OK', {
            'Content-Type': 'text/html',
            'Content-Length': Buffer.byteLength(PAGE), Connection: 'close',
        }, PAGE);
    }
});

server.on('error', (e) => {
    out({ event: 'error', code: e.code, message: e.message });
    process.exit(1);
});

server.listen(Number(process.env.PORT), '127.0.0.1', () =>
    out({ event: 'listening', port: server.address().port }));

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
