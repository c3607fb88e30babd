// Exercises t/lib/Orbit/Node.pm (self-test in t/007-ws-client.t).
//   node echo-json.js run [CODE]  prints {"event":"start",...}, a line that is
//                                 not JSON, a line on stderr, then
//                                 {"event":"done"}; exits with CODE (0)
//   node echo-json.js hang        prints {"event":"start"}, then waits forever
//   node echo-json.js serve       prints {"event":"ready"}, then for each JSON
//                                 line of stdin {"event":"echo","data":LINE},
//                                 after LINE.delay ms; exits when stdin closes
'use strict';

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const [mode = 'serve', ...args] = process.argv.slice(2);

if (mode === 'run') {
    out({ event: 'start', args, env: process.env.ECHO_ENV ?? null });
    process.stdout.write('this line is not JSON\n');
    process.stderr.write('a line to stderr\n');
    out({ event: 'done', text: 'h\u00e9llo \u2603' });
    process.exitCode = Number(args[0] || 0);
} else if (mode === 'hang') {
    out({ event: 'start' });
    setInterval(() => {}, 1000);
} else {
    const readline = require('readline');
    const rl = readline.createInterface({ input: process.stdin });
    rl.on('line', (line) => {
        let data;
        try { data = JSON.parse(line); } catch (e) {
            out({ event: 'bad-line', line });
            return;
        }
        setTimeout(() => out({ event: 'echo', data }), data.delay || 0);
    });
    rl.on('close', () => setTimeout(() => process.exit(0), 50));
    out({ event: 'ready', pid: process.pid });
}
