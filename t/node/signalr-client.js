// A @microsoft/signalr client of the suites, unmodified, JSON hub protocol
// over WebSockets.  Usage: node signalr-client.js URL
// Env: TOKEN, the JWT, given by accessTokenFactory (negotiate's
// Authorization: Bearer, then the WebSocket's); SKIP_NEGOTIATION=1 connects
// straight over WebSockets; TOKEN_IN=query puts the JWT in the URL as
// access_token (as browsers do) instead of the factory; ON, a comma list of
// more targets to listen to.
// Prints one JSON object per line: {"event":"connected","connectionId":..},
// {"event":"start_error","message":..}, {"event":"close","error":..}, and
// every server invocation as {"event":TARGET,"args":[..],"at":ms}.  Reads
// commands from stdin, one JSON object per line:
//   {"invoke":"JoinTenantGroup","args":[..]}
//      -> {"event":"result","of":"JoinTenantGroup","result":..}
//      or {"event":"error","of":"JoinTenantGroup","message":..}
//   {"send":"SendTypingIndicator","args":[..]}  -> {"event":"sent","of":..}
//   {"close":true}  -> stops the connection and exits
const signalR = require('@microsoft/signalr');
const readline = require('readline');

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const token = process.env.TOKEN || '';
let url = process.argv[2];
const options = {};

if (process.env.TOKEN_IN === 'query') {
  url += (url.includes('?') ? '&' : '?')
       + 'access_token=' + encodeURIComponent(token);
} else if (token) {
  options.accessTokenFactory = () => token;
}
if (process.env.SKIP_NEGOTIATION === '1') {
  options.skipNegotiation = true;
  options.transport = signalR.HttpTransportType.WebSockets;
}

const logger = {
  log(level, message) {
    if (level >= signalR.LogLevel.Warning) {
      process.stderr.write(`[${signalR.LogLevel[level]}] ${message}\n`);
    }
  },
};

const connection = new signalR.HubConnectionBuilder()
  .withUrl(url, options)
  .withHubProtocol(new signalR.JsonHubProtocol())
  .configureLogging(logger)
  .build();

const targets = ['HitlCardCreated', 'HitlCardResponded', 'ChatMessageReceived',
  'ChatMessageProcessed', 'TypingIndicator']
  .concat((process.env.ON || '').split(',').filter((s) => s));
for (const name of targets) {
  connection.on(name, (...args) => out({ event: name, args, at: Date.now() }));
}
connection.onclose((e) => out({ event: 'close', error: e ? e.message : null }));

connection.start().then(
  () => out({ event: 'connected', connectionId: connection.connectionId }),
  (e) => out({ event: 'start_error', message: e.message }));

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const cmd = JSON.parse(line);
  if (cmd.close) {
    connection.stop().finally(() => setTimeout(() => process.exit(0), 50));
    return;
  }
  const args = cmd.args || [];
  if (cmd.invoke) {
    connection.invoke(cmd.invoke, ...args).then(
      (result) => out({ event: 'result', of: cmd.invoke,
                        result: result === undefined ? null : result }),
      (e) => out({ event: 'error', of: cmd.invoke, message: e.message }));
  } else if (cmd.send) {
    connection.send(cmd.send, ...args).then(
      () => out({ event: 'sent', of: cmd.send }),
      (e) => out({ event: 'error', of: cmd.send, message: e.message }));
  }
});
process.stdin.on('end', () => process.exit(0));
