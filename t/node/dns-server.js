// A DNS server for the suites: answers A queries for the names of
// DNS_NAMES ("name=1.2.3.4,other=127.0.0.1"), NXDOMAIN for any other name,
// and an empty answer for other types of a known name.  UDP on
// 127.0.0.1:$PORT; says {"event":"listening","port":N} (or
// {"event":"error","code":...} and exits), then {"event":"query",...} per
// query.  Exits when its standard input closes.
'use strict';

const dgram = require('dgram');

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

const names = {};
for (const pair of (process.env.DNS_NAMES || '').split(',')) {
    const [name, addr] = pair.split('=');
    if (name) names[name.toLowerCase()] = addr;
}

const sock = dgram.createSocket('udp4');

sock.on('message', (msg, rinfo) => {
    if (msg.length < 12) return;
    let off = 12;
    const labels = [];
    while (off < msg.length && msg[off] !== 0) {
        labels.push(msg.toString('latin1', off + 1, off + 1 + msg[off]));
        off += 1 + msg[off];
    }
    const qend = off + 5;                 // the 0, type, class
    if (qend > msg.length) return;
    const name = labels.join('.').toLowerCase();
    const type = msg.readUInt16BE(off + 1);
    const addr = names[name];
    out({ event: 'query', name, type });

    const answer = addr && type === 1;
    const head = Buffer.alloc(12);
    msg.copy(head, 0, 0, 2);                               // id
    head.writeUInt16BE(0x8000 | (msg.readUInt16BE(2) & 0x0100) | 0x0080
                       | (addr ? 0 : 3), 2);               // NXDOMAIN
    head.writeUInt16BE(1, 4);
    head.writeUInt16BE(answer ? 1 : 0, 6);
    const parts = [head, msg.subarray(12, qend)];
    if (answer) {
        const rr = Buffer.alloc(16);
        rr.writeUInt16BE(0xc00c, 0);                       // the name
        rr.writeUInt16BE(1, 2);                            // A
        rr.writeUInt16BE(1, 4);                            // IN
        rr.writeUInt32BE(1, 6);                            // TTL
        rr.writeUInt16BE(4, 10);
        addr.split('.').forEach((b, i) => rr.writeUInt8(Number(b), 12 + i));
        parts.push(rr);
    }
    sock.send(Buffer.concat(parts), rinfo.port, rinfo.address);
});

sock.on('error', (e) => {
    out({ event: 'error', code: e.code, message: e.message });
    process.exit(1);
});

sock.bind(Number(process.env.PORT), '127.0.0.1', () =>
    out({ event: 'listening', port: sock.address().port }));

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
