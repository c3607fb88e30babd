// The Node socket.io v4 peer of `tools/orbit bench ws`: one process, the
// same contract as OrbitDesk's gateway, so that the generator speaks to
// both alike.
//
//   node sio-server.js PORT          (env JWT_SECRET: the HS256 key)
//
//   ws://127.0.0.1:PORT/socket.io/?EIO=4&transport=websocket
//     40/chat,{"token":"<JWT>"} -> the socket joins tenant:<tenantId>
//   POST /publish?room=R&event=E[&id=I]  body: the event's JSON data
//     -> io.of('/chat').to(R).emit(E, data, I): 42/chat,["E",data,"I"]
//   GET /health -> 200 ok
//
// socket.io, as installed by `tools/orbit setup` in t/node.  No Redis
// adapter: one process, the in-memory one.
'use strict';

const path = require('path');
const http = require('http');
const crypto = require('crypto');
const { Server } = require(path.join(__dirname, '..', '..', 't', 'node',
  'node_modules', 'socket.io'));

const port = Number(process.argv[2]);
const secret = process.env.JWT_SECRET || '';
if (!port || !secret) {
  process.stderr.write('usage: JWT_SECRET=... node sio-server.js PORT\n');
  process.exit(2);
}

// HS256 over header.payload, as the gateway checks it (exp included)
function verify(token) {
  if (typeof token !== 'string') return null;
  if (token.startsWith('Bearer ')) token = token.slice(7);
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  const mac = crypto.createHmac('sha256', secret)
    .update(parts[0] + '.' + parts[1]).digest('base64url');
  const a = Buffer.from(mac);
  const b = Buffer.from(parts[2]);
  if (a.length !== b.length || !crypto.timingSafeEqual(a, b)) return null;
  let claims;
  try {
    claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString());
  } catch (e) {
    return null;
  }
  if (!claims.tenantId || !(claims.exp > Date.now() / 1000)) return null;
  return claims;
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (req.method === 'GET' && url.pathname === '/health') {
    res.end('ok\n');
    return;
  }
  if (req.method !== 'POST' || url.pathname !== '/publish') {
    res.statusCode = 404;
    res.end();
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let data;
    try {
      data = JSON.parse(Buffer.concat(chunks).toString());
    } catch (e) {
      res.statusCode = 400;
      res.end('bad json\n');
      return;
    }
    const room = url.searchParams.get('room');
    const event = url.searchParams.get('event') || 'message';
    const id = url.searchParams.get('id');
    const nsp = io.of('/chat').to(room);
    if (id) nsp.emit(event, data, id);
    else nsp.emit(event, data);
    res.end('ok\n');
  });
});

const io = new Server(server, {
  transports: ['websocket'],
  serveClient: false,
  perMessageDeflate: false,
  pingInterval: 25000,     // the gateway's defaults
  pingTimeout: 20000,
  maxHttpBufferSize: 1e6,
});

io.of('/chat').use((socket, next) => {
  const claims = verify(socket.handshake.auth && socket.handshake.auth.token);
  if (!claims) {
    next(new Error('Not authorized'));
    return;
  }
  socket.data.tenantId = claims.tenantId;
  next();
});
io.of('/chat').on('connection', (socket) => {
  socket.join('tenant:' + socket.data.tenantId);
});

server.listen({ port, host: '127.0.0.1', backlog: 4096 }, () => {
  process.stdout.write('listening ' + port + '\n');
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => process.exit(0));
}
