# The Socket.IO gateway (src/realtime/orbit_socketio.c over src/io/orbit_ws.c)
# with the real socket.io-client@4 (t/node/sio-client.js), unmodified:
# JWT in the CONNECT auth payload, refusals as connect_error, rooms checked
# against PostgreSQL, events fanned out through Redis to every worker and
# every nginx sharing it, typing to the others of a room, pings, the first
# packet rule, a reload closing with 1001 and the client coming back, and a
# client that stops reading cut off at its queue's cap.

use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use Orbit::Test;
use Orbit::Node;
use Orbit::WS;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;

# waits for what must come: longer under valgrind
my $W = Orbit::Nginx::valgrind_enabled() ? 30 : 5;

my $LOCATIONS = <<'_EOC_';
location /socket.io/ { orbit_socketio; }
location /fast/socket.io/ {
    orbit_socketio;
    orbit_socketio_ping_interval 300ms;
    orbit_socketio_ping_timeout 300ms;
}
location /small/socket.io/ {
    orbit_socketio;
    orbit_ws_max_queue 64k;
    orbit_socketio_max_payload 4k;
}
location = /publish { orbit_test_publish; }
_EOC_

my $t = orbit_nginx(workers => 2, config => $LOCATIONS);
$t->start;

# --- two tenants, their users, contacts and conversations, straight in SQL
my $ta = make_tenant('sioa');
my $tb = make_tenant('siob');
my $admin_a = make_user($ta, 'ADMIN');
my $agent_a = make_user($ta, 'AGENT');
my $admin_b = make_user($tb, 'ADMIN');
my $conv_a = make_conversation($ta);
my $conv_agent = make_conversation($ta, $agent_a);
my $conv_b = make_conversation($tb);

my %tok = (
    admin_a => user_token($admin_a, $ta, 'ADMIN'),
    agent_a => user_token($agent_a, $ta, 'AGENT'),
    admin_b => user_token($admin_b, $tb, 'ADMIN'),
);

sub client {
    my ($token, %o) = @_;
    my $url = "http://127.0.0.1:" . ($o{port} // $port)
            . ($o{prefix} // '') . '/chat';
    my %env = (TOKEN => $token);
    $env{RECONNECT} = 1 if $o{reconnect};
    $env{RECONNECT_DELAY} = $o{delay} if $o{delay};
    return node_start('sio-client.js', args => [$url], env => \%env);
}
sub connected {
    my ($h) = @_;
    my $ev = $h->wait_for(sub { $_[0]{event} =~ /^connect/ }, 2 * $W);
    return $ev && $ev->{event} eq 'connect' ? $ev : undef;
}
sub emit_ack {
    my ($h, $name, @args) = @_;
    $h->write_json({ emit => $name, args => \@args, ack => JSON::PP::true });
    my $ack = $h->wait_for(sub { $_[0]{event} eq 'ack'
                                 && $_[0]{of} eq $name }, 2 * $W);
    return $ack ? $ack->{args}[0] : undef;
}
sub publish {
    my ($tenant, $room, $event, $data, %o) = @_;
    my $q = join '&', map { "$_->[0]=" . uri($_->[1]) }
        [ tenant => $tenant ], [ room => $room ], [ event => $event ],
        [ data => json_of($data) ], $o{to} ? [ to => $o{to} ] : ();
    my $r = $t->http_get("/publish?$q", port => $o{port} // $port);
    die "publish: $r->{status} $r->{body}" unless $r->{status} == 200;
}
sub uri {
    my $s = shift;
    $s =~ s/([^A-Za-z0-9_.~-])/sprintf '%%%02X', ord $1/ge;
    return $s;
}

# --- connecting
my $a1 = client($tok{admin_a});
my $c = connected($a1);
ok($c, 'socket.io-client connects with a JWT in its auth payload')
    or diag(explain($a1->events), $a1->stderr, $t->error_log =~ /(.{0,300}(?:error|alert|socket).{0,200})/s ? $1 : "");
like($c->{id} // '', qr/^[A-Za-z0-9_-]{20}$/, '... and gets a sid');

for my $bad ([ 'garbage', 'a token that is no JWT' ],
             [ user_token($admin_a, $ta, 'ADMIN', exp => time - 5), 'expired' ],
             [ jwt_for({ userId => $admin_a, tenantId => $ta, role =>
                         'ADMIN', iat => int(time), exp => int(time) + 900 },
                       key => 'not-the-secret'), 'signed with another key' ],
             [ '', 'no token' ])
{
    my $h = client($bad->[0]);
    my $ev = $h->wait_for(sub { $_[0]{event} =~ /^connect/ }, 2 * $W);
    is_deeply([ $ev->{event}, $ev->{message} ],
              [ 'connect_error', 'Not authorized' ],
              "refused: $bad->[1]");
    $h->stop;
}

my $root = client(user_token(make_user($ta, 'ADMIN'), '', 'SUPERADMIN'));
my $ev = $root->wait_for(sub { $_[0]{event} =~ /^connect/ }, 2 * $W);
is($ev->{event}, 'connect_error', 'refused: a superadmin has no tenant room');
$root->stop;

# --- joining rooms: PostgreSQL says whose conversation it is
is_deeply(emit_ack($a1, 'join_conversation', $conv_a), { ok => JSON::PP::true },
          'an admin joins a conversation of the tenant (id as a string)');
is_deeply(emit_ack($a1, 'join_conversation', { conversationId => $conv_agent }),
          { ok => JSON::PP::true }, '... and an agent\'s ({conversationId})');
is_deeply(emit_ack($a1, 'join_conversation', $conv_b),
          { ok => JSON::PP::false, error => 'conversation not found' },
          'another tenant\'s conversation: not found');
is_deeply(emit_ack($a1, 'join_conversation', 'not-a-uuid'),
          { ok => JSON::PP::false, error => 'conversationId must be a UUID' },
          'a malformed id: named');

my $ag = client($tok{agent_a});
ok(connected($ag), 'an agent connects');
is(emit_ack($ag, 'join_conversation', $conv_agent)->{ok}, JSON::PP::true,
   'an agent joins a conversation assigned to them');
is(emit_ack($ag, 'join_conversation', $conv_a)->{error},
   'conversation not found', '... not one assigned to nobody');

my $b1 = client($tok{admin_b});
ok(connected($b1), 'tenant B connects');

# --- fan-out: tenant rooms, conversation rooms, latency
my $t0 = time;
publish($ta, "conversation:$conv_a", 'new_message',
        { conversationId => $conv_a, text => 'hello' });
$ev = $a1->wait_for('new_message', $W);
ok($ev, 'new_message reaches the conversation\'s room');
is_deeply($ev->{args}[0], { conversationId => $conv_a, text => 'hello' },
          '... with its data as published');
like($ev->{args}[1], qr/^\d+-\d+$/,
     '... and its id in the event log last (the recovery offset)');
cmp_ok($ev->{at} / 1000 - $t0, '<', 0.1, '... within 100 ms of publishing');
ok(!$ag->wait_for('new_message', 0.3),
   'not to an agent outside that room');

publish($ta, "tenant:$ta", 'notification', { text => 'for A' });
ok($a1->wait_for('notification', $W), 'a tenant event reaches the admin');
ok($ag->wait_for('notification', $W), '... and the agent of that tenant');
ok(!$b1->wait_for('notification', 0.3), '... never the other tenant');

# one event to several rooms: once to a socket in more than one of them
publish($ta, "conversation:$conv_agent,tenant:$ta", 'new_message',
        { n => 'both rooms' });
ok($a1->wait_for(sub { $_[0]{event} eq 'new_message'
                       && $_[0]{args}[0]{n} eq 'both rooms' }, $W),
   'an event to two rooms reaches a socket in both');
ok(!$a1->wait_for(sub { $_[0]{event} eq 'new_message'
                        && $_[0]{args}[0]{n} eq 'both rooms' }, 0.3),
   '... once');
ok($ag->wait_for(sub { $_[0]{event} eq 'new_message'
                       && $_[0]{args}[0]{n} eq 'both rooms' }, $W)
   && !$ag->wait_for(sub { $_[0]{event} eq 'new_message'
                           && $_[0]{args}[0]{n} eq 'both rooms' }, 0.3),
   '... and once to the agent in both rooms too');

# an audience: inbox events of a conversation reach staff and its assignee
publish($ta, "tenant:$ta", 'new_message', { n => 'staff only' },
        to => 'staff');
ok($a1->wait_for(sub { $_[0]{event} eq 'new_message'
                       && $_[0]{args}[0]{n} eq 'staff only' }, $W),
   'an event for staff reaches the admin');
ok(!$ag->wait_for(sub { $_[0]{event} eq 'new_message'
                        && $_[0]{args}[0]{n} eq 'staff only' }, 0.3),
   '... not an agent in the room');
publish($ta, "tenant:$ta", 'new_message', { n => 'assignee' },
        to => "staff $agent_a");
ok($ag->wait_for(sub { $_[0]{event} eq 'new_message'
                       && $_[0]{args}[0]{n} eq 'assignee' }, $W),
   'an event for staff and a user reaches that agent');
ok($a1->wait_for(sub { $_[0]{event} eq 'new_message'
                       && $_[0]{args}[0]{n} eq 'assignee' }, $W),
   '... and the admin');

# each event is also in the tenant's log, for clients that come back
my $redis = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $ENV{TEST_NGINX_REDIS_PORT})
    or die "redis: $!";
my $xlen = resp($redis, 'XLEN', "orbit:rt:log:$ta");
cmp_ok(($xlen =~ /^:(\d+)/)[0], '>=', 2,
       'the events are in the tenant\'s log (with presence changes)');

# --- typing goes to the others in the room
my $a2 = client($tok{admin_a});
ok(connected($a2), 'a second screen of the admin');
is(emit_ack($a2, 'join_conversation', $conv_agent)->{ok}, JSON::PP::true,
   '... in the agent\'s conversation');
is_deeply(emit_ack($ag, 'typing', { conversationId => $conv_agent,
                                    isTyping => JSON::PP::true }),
          { ok => JSON::PP::true }, 'the agent types');
$ev = $a2->wait_for('typing', $W);
is_deeply($ev && $ev->{args}[0], { conversationId => $conv_agent,
                                     userId => $agent_a,
                                     isTyping => JSON::PP::true },
          'the others in the room see it');
ok($a1->wait_for('typing', $W), '... every other socket in it');
ok(!$ag->wait_for('typing', 0.3), '... not the one typing');
is(emit_ack($ag, 'typing', { conversationId => $conv_a })->{error},
   'join the conversation first', 'typing in a room one is not in: refused');

# --- presence: who is online, and who comes and goes
my $online = emit_ack($a1, 'get_presence');
ok($online && $online->{ok}, 'get_presence is acknowledged');
is_deeply([ sort @{ $online->{online} // [] } ],
          [ sort $admin_a, $agent_a ], '... with the tenant\'s online users');
my $agent2 = make_user($ta, 'AGENT');
my $g2 = client(user_token($agent2, $ta, 'AGENT'));
ok(connected($g2), 'another agent connects');
$ev = $a1->wait_for(sub { $_[0]{event} eq 'presence'
                          && $_[0]{args}[0]{userId} eq $agent2 }, $W);
is_deeply($ev && $ev->{args}[0], { userId => $agent2, online => JSON::PP::true },
          '... and the tenant hears it is online');
my $g3 = client(user_token($agent2, $ta, 'AGENT'));
ok(connected($g3), '... a second tab of theirs');
$g2->stop;
ok(!$a1->wait_for(sub { $_[0]{event} eq 'presence'
                        && !$_[0]{args}[0]{online} }, 0.5),
   'closing one of two tabs: still online, nothing said');
$g3->stop;
$ev = $a1->wait_for(sub { $_[0]{event} eq 'presence'
                          && $_[0]{args}[0]{userId} eq $agent2
                          && !$_[0]{args}[0]{online} }, $W);
ok($ev, 'closing the last: offline');
ok(!$b1->wait_for(sub { $_[0]{event} eq 'presence'
                        && $_[0]{args}[0]{userId} eq $agent2 }, 0.3),
   '... never told to another tenant');
is_deeply([ sort @{ emit_ack($a1, 'get_presence')->{online} } ],
          [ sort $admin_a, $agent_a ], 'get_presence again');

# --- leaving
is_deeply(emit_ack($a1, 'leave_conversation', $conv_a), { ok => JSON::PP::true },
          'leave_conversation');
publish($ta, "conversation:$conv_a", 'new_message', { text => 'after' });
ok(!$a1->wait_for(sub { $_[0]{event} eq 'new_message'
                        && $_[0]{args}[0]{text} eq 'after' }, 0.5),
   'no event of a room left');

is(emit_ack($a1, 'send_nothing', 1)->{error}, 'unknown event',
   'an unknown event is acknowledged as such');

# --- across nginx instances sharing Redis (another node)
my $port2 = $port + 1;
my $t2 = orbit_nginx(workers => 1, config => $LOCATIONS,
                     port => $port2,
                     servroot => ($ENV{TEST_NGINX_SERVROOT} // 't/servroot')
                                 . '-node2');
$t2->start;
my $n2 = client($tok{admin_a}, port => $port2);
ok(connected($n2), 'a socket on a second nginx');
is(emit_ack($n2, 'join_conversation', $conv_agent)->{ok}, JSON::PP::true,
   '... in a conversation');
publish($ta, "conversation:$conv_agent", 'message_status',
        { status => 'read' });
ok($n2->wait_for('message_status', $W),
   'an event published on the first reaches the second node');
ok($a2->wait_for('message_status', $W), '... and the first node\'s sockets');
publish($ta, "tenant:$ta", 'notification', { text => 'from node 2' },
        port => $port2);
ok($a1->wait_for(sub { $_[0]{event} eq 'notification'
                       && $_[0]{args}[0]{text} eq 'from node 2' }, $W),
   '... and back');

# every worker: 8 sockets over 2 workers, each gets the tenant's event
my @many = map { client($tok{admin_a}) } 1 .. 8;
is(scalar(grep { connected($_) } @many), 8, '8 more sockets');
publish($ta, "tenant:$ta", 'notification', { text => 'to all' });
is(scalar(grep { $_->wait_for(sub { $_[0]{event} eq 'notification'
                     && $_[0]{args}[0]{text} eq 'to all' }, $W) } @many),
   8, 'a tenant event reaches all of them, whichever worker holds them');
$_->stop for @many;

# --- the wire, frame by frame (Orbit::WS)
my $ws = Orbit::WS->connect($port, '/fast/socket.io/?EIO=4&transport=websocket');
ok($ws->ok, 'a raw WebSocket upgrade');
my $open = $ws->recv_message($W);
like($open->{payload} // '', qr/^0\{"sid":"[\w-]{20}","upgrades":\[\],"pingInterval":300,"pingTimeout":300,"maxPayload":1000000\}$/,
     'the Engine.IO open packet, with the location\'s ping settings');
$ws->send_text('40/chat,{"token":"' . $tok{admin_a} . '"}');
like($ws->recv_message($W)->{payload} // '', qr/^40\/chat,\{"sid":/,
     'CONNECT answered');
is($ws->recv_message(2)->{payload}, '2', 'a ping after pingInterval');
$ws->send_text('3');
is($ws->recv_message(2)->{payload}, '2', 'answered: another ping later');
my $close = $ws->expect_close($W);
is($close->{code}, 1001, 'unanswered: closed once pingTimeout passes');

$ws = Orbit::WS->connect($port, '/socket.io/?EIO=4&transport=websocket');
$ws->recv_message($W);
$ws->send_text('42/chat,["join_conversation","x"]');
is($ws->expect_close($W)->{code}, 1008, 'an event before CONNECT: closed');

$ws = Orbit::WS->connect($port, '/socket.io/?EIO=4&transport=websocket');
$ws->recv_message($W);
$ws->send_text('40/chat,{"token":"' . $tok{admin_a} . '"}');
$ws->recv_message($W);
$ws->send_text('42/chat,["typing",');
is($ws->expect_close($W)->{code}, 1002, 'a packet that is not JSON: 1002');

$ws = Orbit::WS->connect($port, '/socket.io/?EIO=4&transport=websocket');
$ws->recv_message($W);
$ws->send_text('40/admin,{}');
is($ws->recv_message($W)->{payload},
   '44/admin,{"message":"Invalid namespace"}', 'an unknown namespace');
$ws->send_binary("\x01\x02");
is($ws->expect_close($W)->{code}, 1003, 'a binary packet: 1003');

$ws = Orbit::WS->connect($port, '/small/socket.io/?EIO=4&transport=websocket');
$ws->recv_message($W);
$ws->send_text('40/chat,{"token":"' . $ta . ('x' x 5000) . '"}');
is($ws->expect_close($W)->{code}, 1009, 'over maxPayload: 1009');

for my $q ('EIO=3&transport=websocket', 'EIO=4&transport=polling') {
    my $r = $t->http_get("/socket.io/?$q");
    is($r->{status}, 400, "GET /socket.io/?$q: 400");
}
my $r = Orbit::WS->connect($port, '/socket.io/?EIO=4&transport=websocket',
                           headers => { 'Sec-WebSocket-Version' => 8 });
is($r->status, 426, 'Sec-WebSocket-Version 8: 426');
is($r->header('Sec-WebSocket-Version'), '13', '... naming 13');

# --- a client that stops reading is cut off at its queue's cap
$ws = Orbit::WS->connect($port, '/small/socket.io/?EIO=4&transport=websocket');
$ws->recv_message($W);
$ws->send_text('40/chat,{"token":"' . $tok{admin_a} . '"}');
$ws->recv_message($W);
my $rss0 = worker_rss();
my $big = { text => 'x' x 60000 };
for my $i (1 .. 400) {
    resp($redis, 'PUBLISH', "orbit:rt:tenant:$ta",
         "$i-0\n\n\nnotification\n" . json_of($big));
}
ok(wait_until(10, sub { $t->error_log =~ /client does not read.*cut off/ }),
   'a socket that stops reading is cut off (24 MB published at it)');
SKIP: {
    skip 'memory is valgrind\'s under valgrind', 1
        if Orbit::Nginx::valgrind_enabled();
    cmp_ok(worker_rss() - $rss0, '<', 20_000,
           '... and the workers did not grow by what it missed (kB)');
}
ok($a1->wait_for(sub { $_[0]{event} eq 'notification'
                       && length($_[0]{args}[0]{text}) == 60000 }, $W),
   'the reading sockets got the events');

sub resp {
    my ($sock, @args) = @_;
    my $cmd = '*' . @args . "\r\n";
    $cmd .= '$' . length($_) . "\r\n$_\r\n" for @args;
    print {$sock} $cmd;
    my $line = <$sock>;
    return $line;
}
sub worker_rss {
    my $kb = 0;
    for my $pid ($t->worker_pids) {
        open my $fh, '<', "/proc/$pid/status" or next;
        while (<$fh>) { $kb += $1 if /^VmRSS:\s+(\d+)/ }
    }
    return $kb;
}

# --- a reload closes sockets with 1001; clients reconnect and recover
my $rc = client($tok{admin_a}, reconnect => 1, delay => 1500);
ok(connected($rc), 'a reconnecting client');
is(emit_ack($rc, 'join_conversation', $conv_a)->{ok}, JSON::PP::true,
   '... in a conversation');
publish($ta, "conversation:$conv_a", 'new_message', { text => 'before' });
ok($rc->wait_for('new_message', $W), '... hearing its events');
$ws = Orbit::WS->connect($port, '/socket.io/?EIO=4&transport=websocket');
$ws->recv_message($W);
$ws->send_text('40/chat,{"token":"' . $tok{admin_a} . '"}');
$ws->recv_message($W);
$t->reload;
$close = $ws->expect_close($W);
is($close->{code}, 1001, 'a reload: 1001 going away');
ok($rc->wait_for('disconnect', 2 * $W), 'socket.io-client sees the disconnect');
publish($ta, "conversation:$conv_a", 'new_message', { text => 'missed' });
publish($ta, "tenant:$ta", 'notification', { text => 'missed too' });
$ev = connected($rc);
ok($ev, '... and comes back by itself');
ok($ev && $ev->{recovered}, '... recovering its session (socket.recovered)');
$ev = $rc->wait_for('new_message', $W);
is($ev && $ev->{args}[0]{text}, 'missed',
   'the event published while it was away comes first');
ok($rc->wait_for(sub { $_[0]{event} eq 'notification'
                       && $_[0]{args}[0]{text} eq 'missed too' }, $W),
   '... the tenant\'s too');
publish($ta, "conversation:$conv_a", 'new_message', { text => 'after' });
$ev = $rc->wait_for('new_message', $W);
is($ev && $ev->{args}[0]{text}, 'after',
   '... and its conversation room is joined again, without asking');

# a pid the server does not know: a fresh session, not recovered
$ws = Orbit::WS->connect($port, '/socket.io/?EIO=4&transport=websocket');
$ws->recv_message($W);
$ws->send_text('40/chat,{"token":"' . $tok{admin_a} . '","pid":"'
               . ('p' x 20) . '","offset":"1-0"}');
like($ws->recv_message($W)->{payload} // '',
     qr/^40\/chat,\{"sid":"[\w-]{20}","pid":"(?!p{20})[\w-]{20}"\}$/,
     'an unknown pid: a new one');
# another user's pid is not taken over
$ws = Orbit::WS->connect($port, '/socket.io/?EIO=4&transport=websocket');
$ws->recv_message($W);
$ws->send_text('40/chat,{"token":"' . $tok{admin_b} . '"}');
my ($pid_b) = ($ws->recv_message($W)->{payload} // '') =~ /"pid":"([\w-]+)"/;
$ws->close(1000);
$ws->expect_close($W);
$ws = Orbit::WS->connect($port, '/socket.io/?EIO=4&transport=websocket');
$ws->recv_message($W);
$ws->send_text('40/chat,{"token":"' . $tok{admin_a} . '","pid":"'
               . ($pid_b // '') . '","offset":"1-0"}');
my ($pid2) = ($ws->recv_message($W)->{payload} // '') =~ /"pid":"([\w-]+)"/;
ok($pid_b && $pid2 && $pid2 ne $pid_b,
   'another user\'s pid: not taken over, a new one');
ok(wait_until(10, sub { @{[ $t->worker_pids ]} == 2 }),
   'the old workers are gone');

$_->stop for $a1, $a2, $ag, $b1, $n2, $rc;
$t2->stop;
$t->stop;
no_bad_log($t);
no_bad_log($t2, name => 'the second node: no [alert], [crit] or [emerg]');

done_testing;
