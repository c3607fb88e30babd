# The SignalR JSON hub (src/realtime/orbit_signalr.c over src/io/orbit_ws.c)
# with the real @microsoft/signalr client (t/node/signalr-client.js),
# unmodified: negotiate with a Bearer JWT, skipNegotiation with the JWT in
# access_token, signed connection tokens, the handshake, hub methods checked
# against the tenant and PostgreSQL, rooms' events as invocations of the
# client, typing to the others of a session, records split and joined
# across frames, keep-alive both ways, and one event framed for both
# protocols of a room.

use strict;
use warnings;
use Test::More;
use Digest::SHA qw(hmac_sha256_hex);
use MIME::Base64 qw(encode_base64url);
use Time::HiRes qw(time sleep);
use Orbit::Test;
use Orbit::Node;
use Orbit::WS;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;

# waits for what must come: longer under valgrind
my $W = Orbit::Nginx::valgrind_enabled() ? 30 : 5;
my $RS = "\x1e";
my $HUB = '/hubs/orchestrator';

my $LOCATIONS = <<'_EOC_';
location /hubs/orchestrator { orbit_signalr; }
location /fast/hubs/orchestrator {
    orbit_signalr;
    orbit_signalr_keepalive 300ms;
    orbit_signalr_client_timeout 1500ms;
}
location /small/hubs/orchestrator {
    orbit_signalr;
    orbit_signalr_max_message 1k;
}
location /socket.io/ { orbit_socketio; }
location = /publish { orbit_test_publish; }
_EOC_

my $t = orbit_nginx(workers => 2, config => $LOCATIONS);
$t->start;

# --- two tenants, their users and conversations, straight in SQL
my $ta = make_tenant('sra');
my $tb = make_tenant('srb');
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
    my $url = "http://127.0.0.1:$port" . ($o{prefix} // '')
            . '/hubs/orchestrator';
    my %env = (TOKEN => $token);
    $env{SKIP_NEGOTIATION} = 1 if $o{skip};
    $env{TOKEN_IN} = 'query' if $o{query};
    $env{ON} = $o{on} if $o{on};
    return node_start('signalr-client.js', args => [$url], env => \%env);
}
sub connected {
    my ($h) = @_;
    my $ev = $h->wait_for(sub { $_[0]{event} =~ /^(connected|start_error)$/ },
                          2 * $W);
    return $ev && $ev->{event} eq 'connected' ? $ev : undef;
}
# [ 'result', value ] or [ 'error', message ]
sub invoke {
    my ($h, $name, @args) = @_;
    $h->write_json({ invoke => $name, args => \@args });
    my $ev = $h->wait_for(sub { $_[0]{event} =~ /^(result|error)$/
                                && $_[0]{of} eq $name }, 2 * $W);
    return [ 'none' ] unless $ev;
    return $ev->{event} eq 'result' ? [ result => $ev->{result} ]
                                    : [ error => $ev->{message} ];
}
sub publish {
    my ($tenant, $room, $event, $data) = @_;
    my $q = join '&', map { "$_->[0]=" . uri($_->[1]) }
        [ tenant => $tenant ], [ room => $room ], [ event => $event ],
        [ data => json_of($data) ];
    my $r = $t->http_get("/publish?$q");
    die "publish: $r->{status} $r->{body}" unless $r->{status} == 200;
}
sub uri {
    my $s = shift;
    $s =~ s/([^A-Za-z0-9_.~-])/sprintf '%%%02X', ord $1/ge;
    return $s;
}
sub negotiate {
    my ($token, $query) = @_;
    return api($t, 'POST', '/hubs/orchestrator/negotiate'
                           . ($query // '?negotiateVersion=1'),
               raw => '', token => $token,
               headers => { 'Content-Type' => 'text/plain' });
}
# a raw WebSocket past the handshake
sub raw_hub {
    my ($path) = @_;
    my $ws = Orbit::WS->connect($port, ($path // '/hubs/orchestrator')
                                       . "?access_token=$tok{admin_a}");
    $ws->send_text(qq({"protocol":"json","version":1}$RS));
    my $m = $ws->recv_message($W);
    die 'no handshake answer' unless ($m->{payload} // '') eq "{}$RS";
    return $ws;
}

# --- negotiate
my $r = negotiate($tok{admin_a});
is($r->{status}, 200, 'negotiate with a Bearer JWT: 200');
my $neg = $r->{json} // {};
like($neg->{connectionId} // '', qr/^[\w-]{22}$/, '... a connectionId');
like($neg->{connectionToken} // '', qr/^[\w-]+\.[0-9a-f]{64}$/,
     '... a signed connectionToken');
is($neg->{negotiateVersion}, 1, '... negotiateVersion 1');
is_deeply($neg->{availableTransports},
          [ { transport => 'WebSockets',
              transferFormats => [ 'Text', 'Binary' ] } ],
          '... WebSockets only');

$r = negotiate($tok{admin_a}, '');
ok($r->{status} == 200 && !exists $r->{json}{connectionToken}
   && $r->{json}{negotiateVersion} == 0,
   'negotiate version 0: no connectionToken');
my $v0_id = $r->{json}{connectionId};

$r = api($t, 'POST', '/hubs/orchestrator/negotiate?negotiateVersion=1'
                     . "&access_token=$tok{admin_a}", raw => '');
is($r->{status}, 200, 'negotiate with access_token in the query: 200');

for my $bad ([ undef, 'no token' ], [ 'garbage', 'not a JWT' ],
             [ user_token($admin_a, $ta, 'ADMIN', exp => time - 5), 'expired' ],
             [ jwt_for({ userId => $admin_a, tenantId => $ta,
                         role => 'ADMIN', iat => int(time),
                         exp => int(time) + 900 }, key => 'not-the-secret'),
               'signed with another key' ])
{
    is(negotiate($bad->[0])->{status}, 401, "negotiate refused: $bad->[1]");
}
is(negotiate(jwt_for({ userId => make_user($ta, 'ADMIN'), role => 'SUPERADMIN',
                      iat => int(time), exp => int(time) + 900 }))->{status},
   403,
   'negotiate: a superadmin has no tenant here (403)');
is($t->http_get('/hubs/orchestrator/negotiate')->{status}, 405,
   'GET negotiate: 405');

# --- the WebSocket's credentials
my $ws = Orbit::WS->connect($port,
                            "/hubs/orchestrator?id=$neg->{connectionToken}");
ok($ws->ok, 'upgrade with the negotiated token (no other credentials)');
$ws->send_text(qq({"protocol":"json","version":1}$RS));
is($ws->recv_message($W)->{payload}, "{}$RS", '... the handshake answered');
$ws->close(1000);
$ws->expect_close($W);

ok(Orbit::WS->connect($port, "/hubs/orchestrator?id=$v0_id")->ok,
   'upgrade with a version 0 connectionId');

(my $tampered = $neg->{connectionToken}) =~ s/(.)$/$1 eq 'a' ? 'b' : 'a'/e;
is(Orbit::WS->connect($port, "/hubs/orchestrator?id=$tampered")->status, 404,
   'a tampered token: 404');
is(Orbit::WS->connect($port, '/hubs/orchestrator?id=nothing')->status, 404,
   'an unknown id: 404');

# a token as the server makes them, but expired
my $payload = "signalr1|" . ('A' x 22) . "|$admin_a|$ta|ADMIN|"
            . (int(time) - 1);
my $expired = encode_base64url($payload) . '.'
            . hmac_sha256_hex($payload, secret('JWT_SECRET'));
is(Orbit::WS->connect($port, "/hubs/orchestrator?id=$expired")->status, 404,
   'an expired token: 404');
$payload =~ s/\|\d+$/'|' . (int(time) + 30)/e;
my $forged = encode_base64url($payload) . '.'
           . hmac_sha256_hex($payload, secret('JWT_SECRET'));
ok(Orbit::WS->connect($port, "/hubs/orchestrator?id=$forged")->ok,
   '... the same one in date: accepted on its signature alone');

is(Orbit::WS->connect($port, '/hubs/orchestrator')->status, 401,
   'no credentials at all: 401');
is(Orbit::WS->connect($port, '/hubs/orchestrator?access_token=garbage')
       ->status, 401, 'a bad access_token: 401');
ok(Orbit::WS->connect($port, '/hubs/orchestrator',
                      headers => { Authorization => "Bearer $tok{admin_a}" })
       ->ok, 'an Authorization header on the upgrade itself');

# --- the real client
my $a1 = client($tok{admin_a});
my $c = connected($a1);
ok($c, '@microsoft/signalr connects: negotiate with Bearer, WebSockets')
    or diag(explain($a1->events), $a1->stderr);
like($c->{connectionId} // '', qr/^[\w-]{22}$/, '... with its connectionId');

my $sk = client($tok{admin_a}, skip => 1, query => 1);
ok(connected($sk), 'skipNegotiation, the JWT as access_token')
    or diag(explain($sk->events), $sk->stderr);
my $sk2 = client($tok{admin_a}, skip => 1);
ok(connected($sk2), 'skipNegotiation, the JWT from accessTokenFactory')
    or diag(explain($sk2->events), $sk2->stderr);
$sk2->stop;

my $bad = client('garbage');
my $ev = $bad->wait_for(sub { $_[0]{event} =~ /^(connected|start_error)$/ },
                        2 * $W);
ok($ev && $ev->{event} eq 'start_error' && $ev->{message} =~ /401/,
   'a refused token: start() fails on negotiate\'s 401')
    or diag(explain($ev));
$bad->stop;

# --- hub methods
is_deeply(invoke($a1, 'JoinTenantGroup', $ta), [ result => undef ],
          'JoinTenantGroup: its own tenant');
is_deeply(invoke($a1, 'JoinTenantGroup', $tb), [ error => 'Not your tenant' ],
          '... not another tenant');
is_deeply(invoke($a1, 'JoinTenantGroup', 1001),
          [ error => 'Not your tenant' ], '... nor a number');
is_deeply(invoke($a1, 'JoinChatSession', $conv_a), [ result => undef ],
          'JoinChatSession: a conversation of the tenant');
is_deeply(invoke($a1, 'JoinChatSession', $conv_b),
          [ error => 'Chat session not found' ],
          '... not another tenant\'s');
is_deeply(invoke($a1, 'JoinChatSession', 1),
          [ error => 'sessionId must be a conversation UUID' ],
          '... a number: named');
is_deeply(invoke($a1, 'NoSuchMethod', 1), [ error => 'Unknown hub method' ],
          'an unknown method: a Completion with an error');

my $ag = client($tok{agent_a});
ok(connected($ag), 'an agent connects');
is_deeply(invoke($ag, 'JoinChatSession', $conv_agent), [ result => undef ],
          'an agent joins a conversation assigned to them');
is_deeply(invoke($ag, 'JoinChatSession', $conv_a),
          [ error => 'Chat session not found' ],
          '... not one assigned to nobody');

my $b1 = client($tok{admin_b});
ok(connected($b1), 'tenant B connects');
is_deeply(invoke($b1, 'JoinTenantGroup', $tb), [ result => undef ],
          '... into its group');

# --- events: the event's name is the target
my $card = { cardRef => 'HITL-1', cardType => 'approval', title => 'T',
             availableActions => [ 'approve', 'reject' ] };
my $t0 = time;
publish($ta, "tenant:$ta", 'HitlCardCreated', $card);
$ev = $a1->wait_for('HitlCardCreated', $W);
is_deeply($ev && $ev->{args}, [ $card ],
          'HitlCardCreated reaches on("HitlCardCreated") with its data');
cmp_ok(($ev->{at} // 0) / 1000 - $t0, '<', 0.2, '... at once');
ok(!$ag->wait_for('HitlCardCreated', 0.3),
   '... not to a connection outside the group');
ok(!$b1->wait_for('HitlCardCreated', 0.3), '... never to another tenant');

publish($ta, "conversation:$conv_a", 'ChatMessageReceived',
        { sessionId => $conv_a, textContent => 'hello' });
$ev = $a1->wait_for('ChatMessageReceived', $W);
is_deeply($ev && $ev->{args}, [ { sessionId => $conv_a,
                                  textContent => 'hello' } ],
          'ChatMessageReceived reaches the session\'s room');

# --- typing goes to the others in the session
my $a2 = client($tok{admin_a});
my $c2 = connected($a2);
ok($c2, 'a second connection of the admin');
is_deeply(invoke($a2, 'JoinChatSession', $conv_agent), [ result => undef ],
          '... in the agent\'s session');
is_deeply(invoke($ag, 'SendTypingIndicator', $conv_agent, JSON::PP::true),
          [ result => undef ], 'the agent types');
$ev = $a2->wait_for('TypingIndicator', $W);
ok($ev, 'the other connection in the session sees it');
is($ev->{args}[0]{sessionId}, $conv_agent, '... {sessionId,');
like($ev->{args}[0]{connectionId} // '', qr/^[\w-]{22}$/, '... connectionId,');
is($ev->{args}[0]{isTyping}, JSON::PP::true, '... isTyping}');
ok(!$ag->wait_for('TypingIndicator', 0.3), '... not the one typing');
$a2->write_json({ send => 'SendTypingIndicator',
                  args => [ $conv_agent, JSON::PP::false ] });
$ev = $ag->wait_for('TypingIndicator', $W);
ok($ev && $ev->{args}[0]{isTyping} eq JSON::PP::false
   && $ev->{args}[0]{connectionId} eq $c2->{connectionId},
   'send() without an invocationId works too, with the sender\'s id');
is_deeply(invoke($ag, 'SendTypingIndicator', $conv_a, JSON::PP::true),
          [ error => 'Join the chat session first' ],
          'typing in a session one is not in: refused');
is_deeply(invoke($a2, 'LeaveChatSession', $conv_agent), [ result => undef ],
          'LeaveChatSession');
publish($ta, "conversation:$conv_agent", 'ChatMessageProcessed', { x => 1 });
ok($ag->wait_for('ChatMessageProcessed', $W), '... the others still hear');
ok(!$a2->wait_for('ChatMessageProcessed', 0.3), '... not who left');

# --- one room, both protocols: each frames the event its own way
my $sio = node_start('sio-client.js',
                     args => ["http://127.0.0.1:$port/chat"],
                     env => { TOKEN => $tok{admin_a} });
ok($sio->wait_for('connect', 2 * $W), 'a Socket.IO client too');
$sio->write_json({ emit => 'join_conversation', args => [ $conv_a ],
                   ack => JSON::PP::true });
ok($sio->wait_for('ack', $W), '... in the same conversation');
my $raw = raw_hub();
$raw->send_text(qq({"type":1,"invocationId":"1","target":"JoinChatSession",)
                . qq("arguments":["$conv_a"]}$RS));
is($raw->recv_message($W)->{payload},
   qq({"type":3,"invocationId":"1","result":null}$RS),
   'a raw SignalR connection joins it');
publish($ta, "conversation:$conv_a", 'ChatMessageReceived',
        { sessionId => $conv_a, textContent => 'both' });
$ev = $sio->wait_for('ChatMessageReceived', $W);
is_deeply($ev && $ev->{args}[0], { sessionId => $conv_a,
                                   textContent => 'both' },
          'the Socket.IO client gets the event');
$ev = $a1->wait_for(sub { $_[0]{event} eq 'ChatMessageReceived'
                          && $_[0]{args}[0]{textContent} eq 'both' }, $W);
ok($ev, '... and the SignalR client');
my $m = $raw->recv_message($W);
is($m->{payload}, '{"type":1,"target":"ChatMessageReceived","arguments":'
                  . qq([{"sessionId":"$conv_a","textContent":"both"}]}$RS),
   '... framed for SignalR: one invocation record in one frame');
$sio->stop;
$raw->close(1000);
$raw->expect_close($W);

# --- the wire, frame by frame
$ws = Orbit::WS->connect($port, "$HUB?access_token=$tok{admin_a}");
$ws->send_text(qq({"type":1,"target":"JoinTenantGroup",)
               . qq("arguments":["$ta"]}$RS));
$m = $ws->recv_message($W);
like($m->{payload} // '', qr/^\{"error":".*handshake.*"\}\x1e$/,
     'an invocation before the handshake: an error');
is($ws->expect_close($W)->{code}, 1008, '... and closed (1008)');

$ws = Orbit::WS->connect($port, "$HUB?access_token=$tok{admin_a}");
$ws->send_text(qq({"protocol":"messagepack","version":1}$RS));
is($ws->recv_message($W)->{payload},
   qq({"error":"Requested protocol 'messagepack' is not available."}$RS),
   'the messagepack protocol: refused in the handshake');
ok($ws->expect_close($W)->{got_close}, '... and closed');

$ws = Orbit::WS->connect($port, "$HUB?access_token=$tok{admin_a}");
$ws->send_text(qq({"protocol":"json","version":2}$RS));
like($ws->recv_message($W)->{payload}, qr/^\{"error":".*version 2/,
     'json version 2: refused');

# the handshake and an invocation in one frame
$ws = Orbit::WS->connect($port, "$HUB?access_token=$tok{admin_a}");
$ws->send_text(qq({"protocol":"json","version":1}$RS)
               . qq({"type":1,"invocationId":"a","target":"JoinTenantGroup",)
               . qq("arguments":["$ta"]}$RS));
is($ws->recv_message($W)->{payload}, "{}$RS",
   'two records in one frame: the handshake answered');
is($ws->recv_message($W)->{payload},
   qq({"type":3,"invocationId":"a","result":null}$RS),
   '... and the invocation after it');

# one record split across two frames, then two in one
$ws->send_text(qq({"type":1,"invocationId":"b","target":"JoinTen));
ok(!$ws->recv_message(0.3), 'half a record: nothing yet');
$ws->send_text(qq(antGroup","arguments":["$ta"]}$RS));
is($ws->recv_message($W)->{payload},
   qq({"type":3,"invocationId":"b","result":null}$RS),
   'its second half: the record is whole');
$ws->send_text(qq({"type":6}${RS}{"type":1,"invocationId":"c","target":"X",)
               . qq("arguments":[]}${RS}{"type":1,"invocationId":"d\\"",)
               . qq("target":"JoinTenantGroup","arguments":[1]}$RS));
is($ws->recv_message($W)->{payload},
   qq({"type":3,"invocationId":"c","error":"Unknown hub method"}$RS),
   'three records in one frame: the ping, then the first invocation');
is($ws->recv_message($W)->{payload},
   qq({"type":3,"invocationId":"d\\"","error":"Not your tenant"}$RS),
   '... and the second (its id escaped)');
$ws->send_text(qq({"type":1,"target":"JoinTenantGroup",)
               . qq("arguments":["$ta"]}$RS)
               . qq({"type":1,"invocationId":"e","target":"X",)
               . qq("arguments":[]}$RS));
like($ws->recv_message($W)->{payload}, qr/"invocationId":"e"/,
     'an invocation without an id is not answered');
$ws->send_text(qq({"type":7}$RS));
is($ws->expect_close($W)->{code}, 1000, 'a Close message: closed, 1000');

$ws = raw_hub();
$ws->send_text(qq({"type":1,"target":$RS));
like($ws->recv_message($W)->{payload}, qr/^\{"type":7,"error":"[^"]+"\}\x1e$/,
     'a record that is not JSON: a Close message with an error');
is($ws->expect_close($W)->{code}, 1002, '... then 1002');

$ws = raw_hub();
$ws->send_text(qq({"type":42}$RS));
like($ws->recv_message($W)->{payload}, qr/^\{"type":7,"error":/,
     'an unknown message type: a Close message');
is($ws->expect_close($W)->{code}, 1002, '... then 1002');

$ws = raw_hub();
$ws->send_text(qq({"type":1,"target":"JoinTenantGroup"}$RS));
is($ws->expect_close($W)->{code}, 1002,
   'an invocation without arguments: 1002');

$ws = raw_hub('/small/hubs/orchestrator');
$ws->send_text('{"type":1,"target":"' . ('x' x 600));
$ws->send_text('x' x 600);
is($ws->expect_close($W)->{code}, 1009,
   'a record longer than orbit_signalr_max_message over two frames: 1009');

# keep-alive both ways
$ws = raw_hub('/fast/hubs/orchestrator');
is($ws->recv_message($W)->{payload}, qq({"type":6}$RS),
   'a server ping {"type":6} every orbit_signalr_keepalive');
my $alive = 1;
for (1 .. 8) {
    sleep 0.25;
    $ws->send_text(qq({"type":6}$RS));
    $alive = 0 if $ws->is_closed(0);
}
ok($alive, 'pinging the server keeps the connection past client_timeout');
my $close = $ws->expect_close(3);
is($close->{code}, 1001, 'silent for client_timeout: closed (1001)');
ok(scalar(grep { ($_->{payload} // '') =~ /^\{"type":7,"error":"Server timeo/ }
          @{ $close->{frames} }), '... after a Close message saying why');

$ws = Orbit::WS->connect($port, "/fast$HUB?access_token=$tok{admin_a}");
is($ws->expect_close(3)->{code}, 1008, 'no handshake within it: 1008');

# a check in flight when the connection goes
for my $i (1 .. 5) {
    $ws = raw_hub();
    $ws->send_text(qq({"type":1,"invocationId":"x",)
                   . qq("target":"JoinChatSession",)
                   . qq("arguments":["$conv_a"]}$RS));
    $ws->disconnect;
}
sleep 0.5;
$ws = raw_hub();
$ws->send_text(qq({"type":1,"invocationId":"y","target":"JoinChatSession",)
               . qq("arguments":["$conv_a"]}$RS));
is($ws->recv_message($W)->{payload},
   qq({"type":3,"invocationId":"y","result":null}$RS),
   'connections gone with a JoinChatSession in flight: the next one works');
unlike($t->error_log, qr/JoinChatSession check failed/,
       '... their checks dropped quietly');

$_->stop for $a1, $a2, $ag, $b1, $sk;
$t->stop;
no_bad_log($t);

done_testing;
