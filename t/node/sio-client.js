// A socket.io-client@4 of the suites, unmodified, over the WebSocket
// transport.  Usage: node sio-client.js URL   (env TOKEN: the auth token;
// RECONNECT=1 lets the client reconnect by itself, after RECONNECT_DELAY
// ms, 100 by default; connection state recovery is the client's own).
// Prints one JSON object per line: {"event":"connect","id":..},
// {"event":"connect_error","message":..}, {"event":"disconnect",
// "reason":..}, and every server event as {"event":NAME,"args":[..],
// "at":ms}.  Reads commands from stdin, one JSON object per line:
//   {"emit":"join_conversation","args":[..],"ack":true}
//      -> {"event":"ack","of":"join_conversation","args":[..]}
//   {"close":true}  -> closes the socket and exits
const { io } = require('socket.io-client');
const readline = require('readline');

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const socket = io(process.argv[2], {
  transports: ['websocket'],
  auth: { token: process.env.TOKEN },
  reconnection: process.env.RECONNECT === '1',
  reconnectionDelay: Number(process.env.RECONNECT_DELAY || 100),
  reconnectionDelayMax: Number(process.env.RECONNECT_DELAY || 100) * 5,
  randomizationFactor: 0,
});

socket.on('connect', () =>
  out({ event: 'connect', id: socket.id, recovered: socket.recovered }));
socket.on('connect_error', (e) =>
  out({ event: 'connect_error', message: e.message }));
socket.on('disconnect', (reason) => out({ event: 'disconnect', reason }));
socket.onAny((name, ...args) =>
  out({ event: name, args, at: Date.now() }));

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const cmd = JSON.parse(line);
  if (cmd.close) {
    socket.close();
    setTimeout(() => process.exit(0), 50);
    return;
  }
  const args = cmd.args || [];
  if (cmd.ack) {
    socket.emit(cmd.emit, ...args,
      (...res) => out({ event: 'ack', of: cmd.emit, args: res }));
  } else {
    socket.emit(cmd.emit, ...args);
  }
});
process.stdin.on('end', () => process.exit(0));
