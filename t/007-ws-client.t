# Self-test of the suites' WebSocket and Node helpers, no nginx involved:
# t/lib/Orbit/WS.pm (a raw, frame-level RFC 6455 client) against a Node
# server of the ws package (t/node/ws-echo-server.js), and
# t/lib/Orbit/Node.pm (node_run; node_start, wait_for, stop) with
# t/node/echo-json.js.  Needs t/node/node_modules (./tools/orbit setup).

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use Encode ();
use File::Basename qw(dirname);
use File::Spec ();
use IO::Socket::INET ();
use Orbit::Node;
use Orbit::WS qw(encode_frame decode_frame accept_for);

my ($Server, $t0);
END {
    local $?;
    $Server->stop(1) if $Server;
}

# gone: no such process, or only a zombie that init has not reaped yet
sub gone {
    my ($pid) = @_;
    return 1 unless kill 0, $pid;
    open my $fh, '<', "/proc/$pid/stat" or return 1;
    return (split ' ', scalar <$fh>)[2] eq 'Z';
}

my $LIB = File::Spec->rel2abs(dirname(__FILE__) . '/lib');

sub bytes_of { return join '', map { chr(($_ * 7 + 3) % 256) } 1 .. $_[0] }

# --- frames, no server: RFC 6455 5.7's examples and the options
is(encode_frame(opcode => 'text', payload => 'Hello', mask => 0),
   "\x81\x05Hello", 'unmasked "Hello"');
is(encode_frame(opcode => 1, payload => 'Hello',
                mask_key => "\x37\xfa\x21\x3d"),
   "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 'masked "Hello"');
is(encode_frame(opcode => 'text', payload => 'Hel', fin => 0, mask => 0)
   . encode_frame(opcode => 'continuation', payload => 'lo', mask => 0),
   "\x01\x03\x48\x65\x6c\x80\x02\x6c\x6f", 'fragmented "Hello"');
is(encode_frame(opcode => 'ping', payload => 'Hello', mask => 0),
   "\x89\x05Hello", 'ping');
is(substr(encode_frame(opcode => 'binary', payload => 'x' x 256, mask => 0),
          0, 4), "\x82\x7e\x01\x00", '256 bytes: 16-bit length');
is(substr(encode_frame(opcode => 'binary', payload => 'x' x 65536,
                       mask => 0), 0, 10),
   "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", '64 KiB: 64-bit length');
is(encode_frame(opcode => 'text', payload => 'abc', mask => 0,
                len_override => 10), "\x81\x0aabc", 'len_override lies');
is(encode_frame(opcode => 'text', payload => 'ab', mask => 0,
                len_width => 64), "\x81\x7f" . pack('Q>', 2) . 'ab',
   'len_width: a longer length encoding than needed');
is(encode_frame(opcode => 'text', payload => '', mask => 0, rsv => 7,
                fin => 0), "\x71\x00", 'rsv bits, fin off');
is(encode_frame(opcode => 'text', payload => "\x{e9}\x{2603}", mask => 0),
   "\x81\x05\xc3\xa9\xe2\x98\x83", 'a character string goes as UTF-8');
is(encode_frame(opcode => 'text', payload => "\xff", mask => 0),
   "\x81\x01\xff", 'a byte string as it is (invalid UTF-8 on purpose)');
is(accept_for('dGhlIHNhbXBsZSBub25jZQ=='), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=',
   'Sec-WebSocket-Accept of RFC 6455 1.3');

my $ok = 1;
for my $len (0, 1, 125, 126, 65535, 65536, 70000) {
    my $payload = bytes_of($len);
    my $buf = encode_frame(opcode => 'binary', payload => $payload) . 'rest';
    my $short = substr $buf, 0, length($buf) - 5;
    $ok &&= !defined decode_frame(\$short)
            && length $short == length($buf) - 5;
    my $f = decode_frame(\$buf);
    $ok &&= $f && $f->{payload} eq $payload && $f->{masked}
            && $f->{length} == $len && $buf eq 'rest';
}
ok($ok, 'decode_frame: masked frames of 0 to 70000 bytes come back whole,'
        . ' an incomplete one is left in the buffer');


# --- the server
$Server = node_server('ws-echo-server.js');
my $PORT = $Server->port;
ok($PORT > 0 && $PORT < 32768, "the ws server listens on port $PORT");


# --- handshake
my $ws = Orbit::WS->connect($PORT, '/echo', protocols => ['chat', 'super']);
ok($ws->ok, 'upgraded') or diag($ws->error);
is($ws->status, 101, 'status 101');
is($ws->header('Sec-WebSocket-Accept'), accept_for($ws->key),
   'the accept the key calls for');
like($ws->key, qr{^[A-Za-z0-9+/]{22}==$}, 'the key: 16 bytes in base64');
is($ws->subprotocol, 'chat', 'the first protocol offered was chosen');
my $ws2 = Orbit::WS->connect($PORT, '/echo', chunks => 4);
ok($ws2->ok, 'upgraded with the request in 4 pieces');
isnt($ws2->key, $ws->key, 'each connection its own random key');
my $conn = $Server->wait_for(sub {
    $_[0]{event} eq 'connection' && $_[0]{protocol} eq 'chat' }, 3);
ok($conn, 'the server saw the connection (Orbit::Node wait_for)');


# --- echo
for my $len (0, 125, 126, 65536) {
    my $text = join '', map { chr(0x61 + $_ % 26) } 1 .. $len;
    my $want_hl = $len < 126 ? 2 : $len < 65536 ? 4 : 10;
    ok($ws->send_text($text), "text of $len: sent");
    my $m = $ws->recv_message(5);
    ok($m && $m->{opcode} == 1 && $m->{fin} && !$m->{masked}
       && $m->{payload} eq $text, "text of $len: echoed, unmasked")
        or diag(explain($m && { %$m, payload => length $m->{payload} }));
    is($m && $m->{header_length}, $want_hl,
       "text of $len: a $want_hl-byte header");

    my $bin = bytes_of($len);
    $ws->send_binary($bin);
    $m = $ws->recv_message(5);
    ok($m && $m->{opcode} == 2 && $m->{payload} eq $bin,
       "binary of $len: echoed");
}

my $snow = "h\x{e9}llo \x{2603}";
$ws->send_text($snow);
my $m = $ws->recv_message(2);
is($m && Encode::decode('UTF-8', $m->{payload}), $snow,
   'a character string: sent and echoed as UTF-8');

my $dribble = bytes_of(3000);
ok($ws->send_binary($dribble, chunks => 9, chunk_delay => 0.02),
   'a frame written in 9 pieces');
$m = $ws->recv_message(3);
ok($m && $m->{payload} eq $dribble, '... echoed whole');

ok($ws->raw(encode_frame(opcode => 'text', payload => 'raw')
            . encode_frame(opcode => 'text', payload => 'two'),
            chunks => 3), 'raw: two frames in one write, in 3 pieces');
is(join(',', map { my $x = $ws->recv_message(2); $x ? $x->{payload} : '-' }
             1 .. 2), 'raw,two', '... both echoed');


# --- ping, pong
$ws->ping('are you there');
my $f = $ws->recv_frame(2);
ok($f && $f->{opcode} == 10 && $f->{payload} eq 'are you there',
   'ping: pong with the same payload');
$ws->ping();
$f = $ws->recv_frame(2);
ok($f && $f->{type} eq 'pong' && $f->{payload} eq '', 'empty ping: pong');
$ws->pong('unasked');
ok(!$ws->recv_frame(0.3) && $ws->timed_out && !$ws->eof,
   'an unasked pong: no answer (a timeout, not an end)');


# --- fragments
$ws->send_frame(opcode => 'text', payload => 'Hel', fin => 0);
$ws->ping('mid');
$ws->send_frame(opcode => 'continuation', payload => 'lo ', fin => 0);
$ws->send_frame(opcode => 'continuation', payload => 'world',
                chunks => 3);
$m = $ws->recv_message(2);
ok($m && $m->{type} eq 'pong' && $m->{payload} eq 'mid',
   'fragmented send with a ping between: the pong first');
$m = $ws->recv_message(2);
ok($m && $m->{type} eq 'text' && $m->{payload} eq 'Hello world',
   '... then the whole message echoed');

my $frag = Orbit::WS->connect($PORT, '/frag');
ok($frag->ok, '/frag: upgraded');
$frag->send_text('abcdefghi');
$m = $frag->recv_message(2);
ok($m && $m->{type} eq 'ping' && $m->{payload} eq 'between',
   'recv_message: a control frame amid a fragmented message comes at once');
$m = $frag->recv_message(2);
ok($m && $m->{opcode} == 1 && $m->{frames} == 3
   && $m->{payload} eq 'abcdefghi',
   '... then the message from its 3 fragments');
$frag->send_binary("\x00\x01\x02");
$f = $frag->recv_frame(2);
ok($f && $f->{opcode} == 2 && !$f->{fin}, 'recv_frame: the first fragment');
$f = $frag->recv_frame(2);
ok($f && $f->{opcode} == 9, '... the ping');
$m = $frag->recv_message(2);
ok($m && $m->{opcode} == 0 && $m->{error}, 'a continuation with no message'
   . ' open: recv_message says so') or diag(explain($m));


# --- close handshake
ok($ws->close(4001, 'bye'), 'close 4001 "bye" sent');
my $c = $ws->expect_close(3);
ok($c->{got_close}, 'the server answered with a close frame');
is($c->{code}, 4001, '... echoing the code');
is($c->{reason}, 'bye', '... and the reason');
ok($c->{closed} && !$c->{reset} && !$c->{timed_out},
   '... then closed the connection');
ok($ws->is_closed, 'is_closed');
my $ev = $Server->wait_for(sub { $_[0]{event} eq 'close' }, 3);
is($ev && "$ev->{code} $ev->{reason}", '4001 bye',
   'the server saw the close code and reason');
ok(!$ws->send_text('late'), 'sending after the close fails');

$ws2->close;
$c = $ws2->expect_close(3);
ok($c->{got_close} && !defined $c->{code} && $c->{payload} eq ''
   && $c->{closed}, 'a close with no code: answered with none');

my $bad = Orbit::WS->connect($PORT, '/echo');
$bad->send_text('unmasked', mask => 0);
$c = $bad->expect_close(3);
is($c->{code}, 1002, 'an unmasked client frame: the server closes, 1002');
ok($c->{closed}, '... and closes the connection once answered');

$bad = Orbit::WS->connect($PORT, '/echo');
$bad->send_text('x', rsv => 4);
$f = $bad->recv_frame(3);
ok($f && $f->{opcode} == 8 && unpack('n', $f->{payload}) == 1002,
   'RSV1 with no extension: a 1002 close frame (recv_frame)');
$t0 = time;
ok(!$bad->recv_frame(3) && $bad->eof && !$bad->timed_out,
   '... then closes: recv_frame reports the end, not a timeout');
ok(time - $t0 < 2, '... at once');

my $liar = Orbit::WS->connect($PORT, '/echo');
$liar->send_frame(opcode => 'text', payload => 'abc', len_override => 100);
$t0 = time;
ok(!$liar->recv_frame(0.4) && $liar->timed_out && !$liar->eof,
   'a lying length: the server waits for the rest (recv_frame times out)');
ok(time - $t0 >= 0.35 && time - $t0 < 2, '... after the timeout given');
$liar->disconnect;
ok($liar->is_closed, 'disconnect: is_closed');


# --- refusals
my $r = Orbit::WS->connect($PORT, '/plain');
ok(!$r->ok, 'a server that does not speak WebSocket: no upgrade');
is($r->status, 200, '... its status');
like($r->body, qr/not a WebSocket server/, '... and its page');
like($r->error, qr/HTTP 200, not 101/, '... and error says why');

$r = Orbit::WS->connect($PORT, '/auth');
is($r->status, 401, 'no Authorization: 401');
like($r->body, qr/"Unauthorized"/, '... with its JSON body');
$r = Orbit::WS->connect($PORT, '/auth',
                        headers => { Authorization => 'Bearer s3cret' });
ok($r->ok, 'with "Authorization: Bearer s3cret": upgraded');
$r->disconnect;

$r = Orbit::WS->connect($PORT, '/upgrade-required');
is($r->status, 426, '"426 Upgrade Required"');
is($r->body, 'Upgrade Required', '... its chunked body decoded');
is($r->header('sec-websocket-version'), '13', '... headers by any case');

$r = Orbit::WS->connect($PORT, '/bad-accept');
ok(!$r->ok && $r->status == 101, 'a 101 with a wrong accept: not ok');
like($r->error, qr/Sec-WebSocket-Accept/, '... error says why');

$r = Orbit::WS->connect($PORT, '/echo',
                        headers => { 'Sec-WebSocket-Key' => undef });
is($r->status, 400, 'no Sec-WebSocket-Key (a header left out): 400');
$r = Orbit::WS->connect($PORT, '/echo',
                        headers => [ 'Sec-WebSocket-Version' => 7 ]);
is($r->status, 400, 'Sec-WebSocket-Version 7 (a header replaced): 400');

my $closed = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                   Proto => 'tcp', ReuseAddr => 1)
    or die "bind: $!";    # bound, not listening: connections refused
$r = Orbit::WS->connect($closed->sockport, '/');
ok(!$r->ok && !defined $r->status && $r->error =~ /^connect /,
   'connection refused: no status, error says so') or diag($r->error);


# --- Orbit::Node
my $run = node_run('echo-json.js', args => ['run', 3],
                   env => { ECHO_ENV => 'from perl' }, timeout => 20);
is_deeply([ map { $_->{event} } @{ $run->{events} } ], ['start', 'done'],
          'node_run: the JSON lines, decoded, in order');
is_deeply($run->{events}[0]{args}, ['3'], '... args passed');
is($run->{events}[0]{env}, 'from perl', '... env passed');
is($run->{events}[1]{text}, "h\x{e9}llo \x{2603}", '... UTF-8 decoded');
is($run->{exit}, 3, '... its exit code');
ok(!$run->{timed_out}, '... not timed out');
like($run->{stderr}, qr/a line to stderr/, '... its stderr');
is_deeply($run->{other}, ['this line is not JSON'], '... other lines apart');

$run = node_run('echo-json.js', args => ['hang'], timeout => 1);
ok($run->{timed_out} && !defined $run->{exit},
   'node_run: killed at its timeout');
ok($run->{seconds} < 4, "... in time ($run->{seconds} s)");
is($run->{events}[0]{event}, 'start', '... what it said before is kept');

my $h = node_start('echo-json.js', args => ['serve']);
my $ready = $h->wait_for('ready', 10);
ok($ready, 'node_start: wait_for by event name');
is($ready && $ready->{pid}, $h->pid, '... the process is the one started');
$h->write_json({ n => 1, delay => 300 });
$h->write_json({ n => 2 });
my $one = $h->wait_for(sub { $_->{event} eq 'echo' && $_->{data}{n} == 1 },
                       5);
ok($one, 'wait_for: the later one, by a sub');
my $two = $h->wait_for(sub { $_[0]{event} eq 'echo' }, 0);
is($two && $two->{data}{n}, 2,
   '... one that came before the call is not missed');
ok(!$h->wait_for(sub { $_[0]{event} eq 'echo' }, 0),
   '... nor is one returned twice');
$t0 = time;
ok(!defined $h->wait_for('never', 0.3), 'wait_for: undef at its timeout');
ok(time - $t0 < 1.5, '... in time');
is(scalar @{ $h->events }, 3, 'events: all of them');
my $pid = $h->pid;
ok($h->alive, 'alive');
my $st = $h->stop;
ok(gone($pid), 'stop: the process is gone');
ok(defined $st->{exit} || $st->{signal}, '... its status');
is_deeply($h->stop, $st, '... a second stop returns the same');

$h = node_start('echo-json.js', args => ['run', 0]);
$st = $h->wait_exit(10);
ok($st && $st->{exit} == 0 && @{ $st->{events} } == 2,
   'wait_exit: a script that ends by itself');

# the end of a test stops what it started, even when it dies
# (a perl of its own, no shell between: its first line is the node's pid)
sub perl_child {
    my ($code) = @_;
    open my $fh, '-|', $^X, "-I$LIB", '-MOrbit::Node', '-e',
        "\$| = 1; open STDERR, '>', '/dev/null'; $code"
        or die "perl: $!";
    my $pid = <$fh>;
    CORE::close($fh);
    chomp $pid if defined $pid;
    return $pid;
}
my $child = perl_child(q{
    my $h = node_start('echo-json.js', args => ['hang']);
    $h->wait_for('start', 10);
    print $h->pid, "\n";
    die "on purpose\n"});
ok($child && wait_until_gone($child, 5),
   'a test that dies: its node processes are stopped (END)');
# and a test killed by SIGKILL closes its servers' stdin: they exit then
$h = node_server('ws-echo-server.js');
$h->close_stdin;
$st = $h->wait_exit(5);
ok($st && defined $st->{exit} && $st->{exit} == 0,
   'the ws server exits by itself at the end of its stdin');

sub wait_until_gone {
    my ($pid, $secs) = @_;
    my $end = time + $secs;
    until (gone($pid)) {
        return 0 if time > $end;
        sleep 0.05;
    }
    return 1;
}


# --- the end
my $spid = $Server->pid;
$st = $Server->stop;
ok(gone($spid), 'the ws server is stopped');
is($st->{stderr}, '', '... nothing on its stderr');
undef $Server;

done_testing();
