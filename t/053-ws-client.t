# The WebSocket client inside nginx (src/io/orbit_ws_client.c), driven
# over HTTP through the test module's /wsc locations
# (ngx_modules/ngx_http_orbit_test_wsc.c): against a real peer, the Node
# ws server of t/node/ws-echo-server.js, plain and over TLS with a
# throwaway CA made here with the openssl command; against our own server
# side (orbit_test_ws_echo, Socket.IO), plain and TLS; names through
# nginx's resolver and a fake DNS server (t/node/dns-server.js).

use strict;
use warnings;
use Test::More;
use Digest::SHA qw(sha1_hex);
use Encode ();
use File::Temp qw(tempdir);
use IO::Socket::INET ();
use IO::Select ();
use JSON::PP ();
use Time::HiRes qw(time sleep);
use Orbit::Test;
use Orbit::Node;
use Orbit::Nginx ();

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $F = Orbit::Nginx::valgrind_request_factor();
my $JSON = JSON::PP->new->utf8;

# --- a throwaway CA and a server certificate for echo.orbit.test and
# 127.0.0.1; a second, self-signed one nobody trusts
my $dir = tempdir('orbit-wsc-XXXXXX', TMPDIR => 1, CLEANUP => 1);
sub ossl { system(join(' ', 'openssl', @_) . " >/dev/null 2>&1") == 0
               or die "openssl @_ failed" }
my $ec = '-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes';
ossl("req -x509 $ec -keyout $dir/ca.key -out $dir/ca.pem -days 2",
     "-subj '/CN=Orbit Test CA'",
     "-addext basicConstraints=critical,CA:TRUE",
     "-addext keyUsage=critical,keyCertSign,cRLSign");
ossl("req $ec -keyout $dir/srv.key -out $dir/srv.csr",
     "-subj /CN=echo.orbit.test");
open my $ext, '>', "$dir/ext.cnf" or die $!;
print {$ext} "subjectAltName=DNS:echo.orbit.test,IP:127.0.0.1\n"
           . "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n";
close $ext;
ossl("x509 -req -in $dir/srv.csr -CA $dir/ca.pem -CAkey $dir/ca.key",
     "-CAcreateserial -out $dir/srv.pem -days 2 -extfile $dir/ext.cnf");

# --- the peers
my $dns = node_server('dns-server.js',
    env => { DNS_NAMES => 'echo.orbit.test=127.0.0.1,'
                          . 'other.orbit.test=127.0.0.1' });
my $node = node_server('ws-echo-server.js');
my $tls = node_server('ws-echo-server.js', from => $node->port + 1,
    env => { TLS_CERT => "$dir/srv.pem", TLS_KEY => "$dir/srv.key" });
my ($NP, $TP, $DP) = ($node->port, $tls->port, $dns->port);
my $ours_tls = free_port($TP + 1);

# a socket that accepts (the kernel does) and never answers, and a port
# bound but not listening (connections refused)
my $silent = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                   Listen => 16, ReuseAddr => 1)
    or die "listen: $!";
my $closed = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                   Proto => 'tcp', ReuseAddr => 1)
    or die "bind: $!";
my ($SP, $CP) = ($silent->sockport, $closed->sockport);

my $resolver = "resolver 127.0.0.1:$DP ipv6=off valid=1s; "
             . 'resolver_timeout 5s;';

my $t = orbit_nginx(
    http_config => "orbit_postgres \"$ENV{TEST_NGINX_PG_DSN}\" pool=2;\n"
        . "orbit_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};\n"
        . "orbit_secrets $ENV{TEST_NGINX_SECRETS};\n"
        . "server {\n"
        . "    listen 127.0.0.1:$ours_tls ssl;\n"
        . "    ssl_certificate $dir/srv.pem;\n"
        . "    ssl_certificate_key $dir/srv.key;\n"
        . "    location /echo { orbit_test_ws_echo; }\n"
        . "}\n",
    config => <<"_EOC_");
location /wsc { orbit_test_ws_client; $resolver }
location /wsc-ca { orbit_test_ws_client trusted=$dir/ca.pem; $resolver }
location /wsc-noverify { orbit_test_ws_client verify=off; }
location /echo { orbit_test_ws_echo; }
location /socket.io/ { orbit_socketio; }
_EOC_
$t->start;

sub esc {
    my ($s) = @_;
    $s = Encode::encode('UTF-8', $s);
    $s =~ s/([^A-Za-z0-9\-._~])/sprintf '%%%02X', ord $1/ge;
    return $s;
}

# GET /LOC?url=URL&k=v...; the JSON answer (or {http => status, body})
sub wsc {
    my ($loc, $url, @kv) = @_;
    my $q = 'url=' . esc($url);
    while (my ($k, $v) = splice @kv, 0, 2) { $q .= "&$k=" . esc($v) }
    my $r = $t->http('GET', "/$loc?$q", undef, timeout => 30 * $F);
    my $j = eval { $JSON->decode($r->{body}) };
    return $j && ($r->{status} // 0) == 200
           ? $j : { http => $r->{status}, body => $r->{body} };
}

sub texts { return [ map { $_->{text} } @{ $_[0]{messages} // [] } ] }

# the next event of that name and path (and for which $also is true) that
# no earlier call returned
sub node_event {
    my ($h, $event, $path, $also) = @_;
    return $h->wait_for(sub { $_[0]{event} eq $event
                              && $_[0]{path} eq $path
                              && (!$also || $also->($_[0])) }, 10 * $F);
}

sub bytes_text { return join '', map { chr(97 + $_ % 26) } 0 .. $_[0] - 1 }
sub bytes_bin  { return join '', map { chr(($_ * 7 + 3) % 256) }
                                 0 .. $_[0] - 1 }


# --- against the Node ws server
my $r = wsc('wsc', "ws://127.0.0.1:$NP/echo", send => 'hello',
            send => "h\x{e9}llo \x{2603}");
ok($r->{opened} && $r->{status} == 101, 'opened: 101') or diag(explain($r));
is_deeply(texts($r), [ 'hello', "h\x{e9}llo \x{2603}" ],
          'text messages echoed, UTF-8 intact');
is_deeply($r->{close}, { code => 1000, reason => 'done' },
          'our close 1000 "done": the close code of the connection');
is($r->{error}, '', '... and no error');
ok(node_event($node, 'close', '/echo',
              sub { "$_[0]{code} $_[0]{reason}" eq '1000 done' }),
   'the server saw our close frame (masked, or ws would have failed us)');
my $ev = node_event($node, 'connection', '/echo');
is($ev && $ev->{host}, "127.0.0.1:$NP", 'Host: the URL\'s authority');

$r = wsc('wsc', "ws://127.0.0.1:$NP/echo", binary => 1, big => 100000);
is_deeply([ map { "$_->{type} $_->{len} $_->{sha1}" } @{ $r->{messages} } ],
          [ 'binary 100000 ' . sha1_hex(bytes_bin(100000)) ],
          'a binary message of 100000 bytes echoed, byte for byte');

$r = wsc('wsc', "ws://127.0.0.1:$NP/frag", big => 200000);
is_deeply([ map { "$_->{type} $_->{len} $_->{sha1}" } @{ $r->{messages} } ],
          [ 'text 200000 ' . sha1_hex(bytes_text(200000)) ],
          'a message the server sent in 3 fragments: joined whole');
$ev = node_event($node, 'pong', '/frag');
is($ev && $ev->{payload}, 'between',
   'the server\'s ping between the fragments was answered, same payload');

$r = wsc('wsc', "ws://127.0.0.1:$NP/hello", send => 'x', n => 2);
is_deeply(texts($r), [ 'hello', 'x' ],
          'a frame right behind the 101, then the echo');

$r = wsc('wsc', "ws://127.0.0.1:$NP/close?code=4001&reason=bye", n => 1);
ok($r->{opened}, '/close: opened');
is_deeply($r->{close}, { code => 4001, reason => 'bye' },
          'the server closes with 4001 "bye": the close callback has both');
is($r->{error}, '', '... not an error');

$r = wsc('wsc', "ws://127.0.0.1:$NP/auth", send => 'hi',
         header => 'Authorization: Bearer s3cret',
         header => 'OpenAI-Beta: realtime=v1',
         protocol => 'chat, superchat');
is_deeply([ $r->{opened}, $r->{protocol}, @{ texts($r) } ],
          [ JSON::PP::true, 'chat', 'hi' ],
          'extra headers and subprotocols: upgraded, "chat" chosen');
$ev = node_event($node, 'connection', '/auth');
is_deeply($ev && [ @$ev{qw(authorization openai_beta protocol)} ],
          [ 'Bearer s3cret', 'realtime=v1', 'chat' ],
          '... the server saw Authorization, OpenAI-Beta and the protocol');

$r = wsc('wsc', "ws://127.0.0.1:$NP/auth", send => 'hi');
is_deeply([ $r->{opened}, $r->{status}, $r->{error} ],
          [ JSON::PP::false, 401, 'HTTP 401, not 101' ],
          'refused with 401: an error with the status, no close');
ok(!exists $r->{close}, '... and no close callback');

$r = wsc('wsc', "ws://127.0.0.1:$NP/plain", send => 'hi');
is_deeply([ $r->{status}, $r->{error} ], [ 200, 'HTTP 200, not 101' ],
          'a server that answers 200: an error with the status');

$r = wsc('wsc', "ws://127.0.0.1:$NP/bad-accept", send => 'hi');
is($r->{status}, 101, 'a 101 with a wrong accept: status 101');
like($r->{error}, qr/bad handshake: a wrong Sec-WebSocket-Accept/,
     '... but an error, saying why');
ok(!$r->{opened}, '... never opened');

$r = wsc('wsc', "ws://127.0.0.1:$NP/echo", big => 5000, max => 1000);
is_deeply([ $r->{opened}, $r->{close}{code}, $r->{error},
            scalar @{ $r->{messages} } ],
          [ JSON::PP::true, 1009, 'message too big', 0 ],
          'an echo over the message cap: we close with 1009');
ok(node_event($node, 'close', '/echo', sub { $_[0]{code} == 1009 }),
   '... and the server saw 1009');

$r = wsc('wsc', "ws://127.0.0.1:$NP/echo", send => 'x', ping => 200,
         hold => 1200);
is_deeply(texts($r), ['x'], 'with pings every 200 ms: the echo');
is($r->{close}{code}, 1000, '... a clean close after 1.2 s');
node_event($node, 'ping', '/echo');
my @pings = grep { $_->{event} eq 'ping' && $_->{path} eq '/echo' }
            @{ $node->events };
ok(@pings >= 3, 'the server got our pings (' . scalar(@pings) . ')');

my $t0 = time;
$r = wsc('wsc', "ws://127.0.0.1:$NP/nopong", send => 'x', ping => 300,
         hold => 30000);
is_deeply([ $r->{close}{code}, $r->{error} ], [ 1006, 'no pong in time' ],
          'a server that answers no ping: 1006, no pong in time');
ok(time - $t0 < 10 * $F, '... within two intervals, not the hold');


# --- failures before the open
$t0 = time;
$r = wsc('wsc', "ws://127.0.0.1:$SP/", timeout => 1000);
is($r->{error}, 'timed out waiting for the answer',
   'a server that never answers: timed out waiting for the answer');
ok($r->{ms} >= 900 && $r->{ms} < 5000 * $F, "... after 1 s ($r->{ms} ms)");
is($r->{status}, 0, '... status 0');

$r = wsc('wsc-noverify', "wss://127.0.0.1:$SP/", timeout => 1000);
is($r->{error}, 'timed out in the TLS handshake',
   'wss to it: timed out in the TLS handshake');

$r = wsc('wsc', "ws://127.0.0.1:$CP/");
like($r->{error}, qr/^connect\(\) to 127\.0\.0\.1:$CP failed/,
     'connection refused: connect() failed') or diag(explain($r));

$r = wsc('wsc', 'http://127.0.0.1/');
is_deeply([ $r->{http}, $r->{body} ], [ 400, 'invalid ws:// or wss:// URL' ],
          'not a ws URL: refused at once, nothing started');

$r = wsc('wsc-noverify', "ws://echo.orbit.test:$NP/echo");
is_deeply([ $r->{http}, $r->{body} ], [ 400, 'a host name needs a resolver' ],
          'a host name where no resolver is configured: refused at once');


# --- names through the resolver
$r = wsc('wsc', "ws://echo.orbit.test:$NP/echo", send => 'by name');
is_deeply(texts($r), ['by name'], 'ws://echo.orbit.test: resolved, echoed');
ok($dns->wait_for(sub { $_[0]{event} eq 'query'
                        && $_[0]{name} eq 'echo.orbit.test' }, 5 * $F),
   '... the DNS server was asked');
ok(node_event($node, 'connection', '/echo',
              sub { $_[0]{host} eq "echo.orbit.test:$NP" }),
   '... Host: the name');

$r = wsc('wsc', "ws://nowhere.orbit.test:$NP/echo");
like($r->{error},
     qr/"nowhere\.orbit\.test" could not be resolved \(3: Host not found/,
     'an unknown name: could not be resolved');


# --- TLS against the Node server
$r = wsc('wsc-ca', "wss://echo.orbit.test:$TP/echo", send => 'secret');
is_deeply([ $r->{opened}, @{ texts($r) } ], [ JSON::PP::true, 'secret' ],
          'wss with our CA trusted: verified, echoed') or diag(explain($r));
ok(node_event($tls, 'connection', '/echo',
              sub { ($_[0]{servername} // '') eq 'echo.orbit.test' }),
   '... SNI: the server was asked for echo.orbit.test');

$r = wsc('wsc-ca', "wss://127.0.0.1:$TP/echo", send => 'ip');
is_deeply(texts($r), ['ip'], 'wss to the address, in the certificate too');
ok(node_event($tls, 'connection', '/echo',
              sub { $_[0]{host} eq "127.0.0.1:$TP"
                    && !defined $_[0]{servername} }),
   '... no SNI for an address');

$r = wsc('wsc', "wss://127.0.0.1:$TP/echo", send => 'x');
like($r->{error},
     qr/^certificate verify failed: unable to (get local issuer|verify the)/,
     'verification on, our CA not trusted: refused');
ok(!$r->{opened}, '... never opened');

$r = wsc('wsc-ca', "wss://other.orbit.test:$TP/echo", send => 'x');
like($r->{error}, qr/^certificate verify failed: hostname mismatch/i,
     'a trusted certificate for another name: refused');

$r = wsc('wsc-noverify', "wss://127.0.0.1:$TP/echo", send => 'x');
is_deeply(texts($r), ['x'], 'verification off: the same server accepted');


# --- a client and a server of ours
$r = wsc('wsc', "ws://127.0.0.1:$port/echo", send => 'to ourselves');
is_deeply(texts($r), ['to ourselves'], 'our client, our echo server');
is($r->{close}{code}, 1000, '... closed cleanly');

$r = wsc('wsc', "ws://127.0.0.1:$port/echo", binary => 1, big => 300000);
is_deeply([ map { "$_->{len} $_->{sha1}" } @{ $r->{messages} } ],
          [ '300000 ' . sha1_hex(bytes_bin(300000)) ],
          '... 300000 binary bytes both ways');

$r = wsc('wsc', "ws://127.0.0.1:$port/echo", send => 'close 4003 bye now',
         n => 0, hold => 30000);
is_deeply($r->{close}, { code => 4003, reason => 'bye now' },
          '... our server closes with 4003: our client gets it');

$r = wsc('wsc-ca', "wss://127.0.0.1:$ours_tls/echo", send => 'tls both');
is_deeply(texts($r), ['tls both'], '... and over TLS, verified');

my $jwt = jwt_for({ userId => '00000000-0000-0000-0000-000000000001',
                    tenantId => '00000000-0000-0000-0000-000000000002',
                    role => 'ADMIN', iat => int(time),
                    exp => int(time) + 900 });
$r = wsc('wsc', "ws://127.0.0.1:$port/socket.io/?EIO=4&transport=websocket",
         send => qq{40/chat,{"token":"$jwt"}}, n => 2);
like($r->{messages}[0]{text} // '', qr/^0\{"sid":/,
     'Socket.IO: the Engine.IO open packet');
like($r->{messages}[1]{text} // '', qr/^40\/chat,\{"sid":/,
     '... and the namespace CONNECT answered');


# --- the HTTP client goes away while ours waits: nothing left behind
for my $left ("wsc?url=" . esc("ws://127.0.0.1:$SP/"),
              "wsc-ca?url=" . esc("wss://echo.orbit.test:$SP/"))
{
    my $gone = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $port)
        or die "connect: $!";
    print {$gone} "GET /$left&timeout=60000 HTTP/1.1\r\n"
        . "Host: localhost\r\n\r\n";
    sleep 0.5;
    close $gone;
}
sleep 0.5;
$r = wsc('wsc', "ws://127.0.0.1:$NP/echo", send => 'still here');
is_deeply(texts($r), ['still here'],
          'clients that left mid-handshake (plain, TLS): the worker goes on');


# --- a reload: an open client connection gets 1001
my $held = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port)
    or die "connect: $!";
print {$held} 'GET /wsc?url=' . esc("ws://127.0.0.1:$NP/hello")
    . "&n=1&hold=60000 HTTP/1.1\r\nHost: localhost\r\nConnection: close"
    . "\r\n\r\n";
ok(node_event($node, 'connection', '/hello'), 'a client held open');
ok($t->reload, 'reload');
ok(node_event($node, 'close', '/hello',
              sub { "$_[0]{code} $_[0]{reason}" eq '1001 client going away' }),
   '... the server got 1001 "client going away"');
my $answer = '';
my $sel = IO::Select->new($held);
my $deadline = time + 10 * $F;
while (time < $deadline && $sel->can_read($deadline - time)) {
    last unless sysread $held, my $chunk, 65536;
    $answer .= $chunk;
}
my ($body) = $answer =~ /\r\n\r\n(.*)\z/s;
$r = eval { $JSON->decode($body // '') } // {};
is_deeply($r->{close}, { code => 1001, reason => 'client going away' },
          '... and the held request was answered with it');


$t->stop;
no_bad_log($t);
$_->stop for $node, $tls, $dns;

done_testing;
