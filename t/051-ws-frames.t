# RFC 6455 at the frame level against nginx (src/io/orbit_ws.c): the
# Autobahn sections 1-7 checklist, end to end, on a Socket.IO location.
# The codec's own unit test (t/unit/test_ws.c) covers every case byte by
# byte; here each kind of case goes through a real connection: frames
# split over writes, control frames between fragments, the close handshake
# and its codes, and the upgrade's refusals.

use strict;
use warnings;
use Test::More;
use Orbit::Test;
use Orbit::WS;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $PATH = '/socket.io/?EIO=4&transport=websocket';

my $t = orbit_nginx(config => <<'_EOC_');
location /socket.io/ { orbit_socketio; orbit_socketio_max_payload 64k; }
_EOC_
$t->start;

my $jwt = jwt_for({ userId => '00000000-0000-0000-0000-000000000001',
                    tenantId => '00000000-0000-0000-0000-000000000002',
                    role => 'ADMIN', iat => int(time), exp => int(time) + 900 });

# an open socket, past the Engine.IO open packet
sub sock {
    my $ws = Orbit::WS->connect($port, $PATH);
    die 'upgrade: ' . ($ws->status // $ws->error) unless $ws->ok;
    my $open = $ws->recv_message(5);
    die 'no open packet' unless ($open->{payload} // '') =~ /^0\{/;
    return $ws;
}

# a client's ping ("2probe" style) is answered with "3..." by Engine.IO;
# a WebSocket ping with a pong of the same payload
for my $len (0, 125) {
    my $ws = sock();
    my $p = 'p' x $len;
    $ws->ping($p);
    my $f = $ws->recv_frame(5);
    is_deeply([ $f->{type}, $f->{payload} ], [ 'pong', $p ],
              "2.x ping of $len bytes: pong with its payload");
}

{
    my $ws = sock();
    $ws->ping('x' x 126, len_width => 16);
    is($ws->expect_close(5)->{code}, 1002, '2.5 a ping of 126 bytes: 1002');
}

{
    my $ws = sock();
    $ws->send_frame(opcode => 'ping', payload => 'a', fin => 0);
    is($ws->expect_close(5)->{code}, 1002, '5.1 a fragmented ping: 1002');
}

for my $rsv (1, 2, 4) {
    my $ws = sock();
    $ws->send_frame(opcode => 'text', payload => '6', rsv => $rsv);
    is($ws->expect_close(5)->{code}, 1002, "3.x RSV $rsv set: 1002");
}

for my $op (3, 7, 0xB, 0xF) {
    my $ws = sock();
    $ws->send_frame(opcode => $op, payload => '');
    is($ws->expect_close(5)->{code}, 1002,
       sprintf '4.x reserved opcode 0x%X: 1002', $op);
}

{
    my $ws = sock();
    $ws->send_frame(opcode => 'text', payload => '6', mask => 0);
    is($ws->expect_close(5)->{code}, 1002, 'an unmasked client frame: 1002');
}

# 5.x: a message in fragments, a ping between them, dribbled byte by byte
{
    my $ws = sock();
    my $connect = '40/chat,{"token":"' . $jwt . '"}';
    my @part = (substr($connect, 0, 5), substr($connect, 5, 50),
                substr($connect, 55));
    $ws->send_frame(opcode => 'text', payload => $part[0], fin => 0);
    $ws->ping('mid');
    $ws->send_frame(opcode => 'cont', payload => $part[1], fin => 0,
                    chunks => 7);
    $ws->send_frame(opcode => 'cont', payload => $part[2], fin => 1);
    my $f = $ws->recv_frame(5);
    is_deeply([ $f->{type}, $f->{payload} ], [ 'pong', 'mid' ],
              '5.x a ping between fragments is answered at once');
    like($ws->recv_message(5)->{payload} // '', qr/^40\/chat,\{"sid"/,
         '... and the three fragments are one CONNECT, answered');
}

{
    my $ws = sock();
    $ws->send_frame(opcode => 'cont', payload => 'x');
    is($ws->expect_close(5)->{code}, 1002, '5.x a continuation first: 1002');
}

{
    my $ws = sock();
    $ws->send_frame(opcode => 'text', payload => '4', fin => 0);
    $ws->send_frame(opcode => 'text', payload => '0');
    is($ws->expect_close(5)->{code}, 1002,
       '5.x a new message inside a fragmented one: 1002');
}

# 6.x: UTF-8, checked as it comes
{
    my $ws = sock();
    $ws->send_text("40/chat,{\"token\":\"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\"}");
    is($ws->recv_message(5)->{payload},
       '44/chat,{"message":"Not authorized"}',
       '6.x valid multi-byte UTF-8 is read (and the token refused)');
}

for my $bad ([ "\xc0\x80", 'an overlong NUL' ],
             [ "\xed\xa0\x80", 'a surrogate' ],
             [ "\xf4\x90\x80\x80", 'above U+10FFFF' ],
             [ "\xce", 'a truncated sequence' ])
{
    my $ws = sock();
    $ws->send_text("4$bad->[0]");
    is($ws->expect_close(5)->{code}, 1007, "6.x $bad->[1]: 1007");
}

{
    my $ws = sock();
    $ws->send_frame(opcode => 'text', payload => "4\xf4", fin => 0);
    $ws->send_frame(opcode => 'cont', payload => "\x90\x80\x80", fin => 0);
    my $c = $ws->expect_close(5);
    is($c->{code}, 1007, '6.x fail fast: 1007 before the message ends');
}

# 7.x: the close handshake
{
    my $ws = sock();
    $ws->close(1000, 'bye');
    my $c = $ws->expect_close(5, reply => 0);
    is_deeply([ $c->{code}, $c->{closed} ], [ 1000, 1 ],
              '7.1 a close is echoed, then the server closes TCP');
}

{
    my $ws = sock();
    $ws->send_frame(opcode => 'close', payload => '');
    my $c = $ws->expect_close(5, reply => 0);
    ok($c->{got_close} && $c->{closed}, '7.3 an empty close: echoed');
}

{
    my $ws = sock();
    $ws->send_frame(opcode => 'close', payload => "\x03");
    is($ws->expect_close(5)->{code}, 1002, '7.3 a 1-byte close body: 1002');
}

for my $code (1000, 1001, 1003, 1011, 3000, 4999) {
    my $ws = sock();
    $ws->close($code);
    is($ws->expect_close(5, reply => 0)->{code}, $code,
       "7.7 close code $code: echoed");
}

for my $code (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000) {
    my $ws = sock();
    $ws->send_frame(opcode => 'close', payload => pack('n', $code));
    is($ws->expect_close(5)->{code}, 1002, "7.9 close code $code: 1002");
}

{
    my $ws = sock();
    $ws->send_frame(opcode => 'close', payload => pack('n', 1000) . "\xff");
    is($ws->expect_close(5)->{code}, 1007, '7.5 a close reason not UTF-8: 1007');
}

{
    my $ws = sock();
    $ws->send_frame(opcode => 'text', payload => 'x' x 70000);
    is($ws->expect_close(5)->{code}, 1009,
       '9.x over the location\'s maxPayload: 1009');
}

# the upgrade's refusals
my %refusal = (
    'no Upgrade header'      => [ { Upgrade => undef }, 400 ],
    'no Sec-WebSocket-Key'   => [ { 'Sec-WebSocket-Key' => undef }, 400 ],
    'a key of 15 bytes'      => [ { 'Sec-WebSocket-Key' =>
                                    'AAAAAAAAAAAAAAAAAAAA' }, 400 ],
    'Sec-WebSocket-Version 7' => [ { 'Sec-WebSocket-Version' => 7 }, 426 ],
);
for my $name (sort keys %refusal) {
    my ($h, $status) = @{ $refusal{$name} };
    my $r = Orbit::WS->connect($port, $PATH, headers => $h);
    is($r->status, $status, "refused: $name ($status)");
}
is(Orbit::WS->connect($port, $PATH, method => 'POST')->status, 405,
   'refused: POST (405)');

$t->stop;
no_bad_log($t);

done_testing;
