# The live-chat widget (src/channels/orbit_livechat.c): a visitor's
# session and token, the visitor's messages through the shared pipeline
# into a "livechat" conversation that agents see in real time, the
# visitor's own view over REST (no private notes), the visitor's socket in
# its own room; a visitor's token opens nothing else.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use Orbit::Test;
use Orbit::Node;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $W = Orbit::Nginx::valgrind_enabled() ? 30 : 5;

my $t = orbit_nginx(config => "location /socket.io/ { orbit_socketio; }\n"
                              . "location /hubs/orchestrator { orbit_signalr; }\n");
$t->start;

my $ta = make_tenant('lc');
my $tb = make_tenant('lcb');
my $widget = uniq('lc_');
my $widget_b = uniq('lc_');
psql("INSERT INTO channel_connections (tenant_id, channel, name, account_id)"
     . " VALUES ('$ta', 'livechat', 'Website', '$widget'),"
     . " ('$tb', 'livechat', 'B site', '$widget_b')");
my $admin = make_user($ta, 'ADMIN');
my $admin_b = make_user($tb, 'ADMIN');

# --- a session
my $r = api($t, 'POST', '/api/v1/channels/live-chat/session',
            body => { widgetKey => $widget });
is($r->{status}, 201, 'POST /channels/live-chat/session: 201');
my $s = $r->{json} // {};
like($s->{visitorId} // '', qr/^v_[\w-]{22}$/, '... a visitor id');
is($s->{widget}{name}, 'Website', '... the widget\'s name');
ok($s->{token} && $s->{expiresIn} > 86400, '... and a token good for days');
my $vt = $s->{token};

$r = api($t, 'POST', '/api/v1/channels/live-chat/session',
         body => { widgetKey => $widget, visitorToken => $vt });
is($r->{json}{visitorId}, $s->{visitorId},
   'with its token back: the same visitor');
$r = api($t, 'POST', '/api/v1/channels/live-chat/session',
         body => { widgetKey => $widget_b, visitorToken => $vt });
isnt($r->{json}{visitorId}, $s->{visitorId},
     '... but not on another tenant\'s widget');
is(api($t, 'POST', '/api/v1/channels/live-chat/session',
       body => { widgetKey => 'lc_nope' })->{status}, 404,
   'an unknown widget: 404');
for my $bad ([ {}, 'no widgetKey' ], [ { widgetKey => 42 }, 'a number' ],
             [ { widgetKey => $widget, extra => 1 }, 'an unknown field' ])
{
    is(api($t, 'POST', '/api/v1/channels/live-chat/session',
           body => $bad->[0])->{status}, 400, "session with $bad->[1]: 400");
}

# --- agents listen
my $agent_sock = node_start('sio-client.js',
                            args => [ "http://127.0.0.1:$port/chat" ],
                            env => { TOKEN => user_token($admin, $ta, 'ADMIN') });
ok($agent_sock->wait_for(sub { $_[0]{event} eq 'connect' }, 2 * $W),
   'the admin\'s socket connects');

# --- the visitor writes
sub say {
    my ($token, $body) = @_;
    return api($t, 'POST', '/api/v1/channels/live-chat/message',
               token => $token, body => $body);
}
$r = say($vt, { text => 'Hi! Do you ship to Norway?', name => 'Nora',
                id => 'w1' });
is($r->{status}, 200, 'the visitor\'s first message: 200');
is($r->{json}{stored}, 1, '... stored');
my $ev = $agent_sock->wait_for('new_message', $W);
is($ev && $ev->{args}[0]{content}{text}, 'Hi! Do you ship to Norway?',
   'agents hear it as new_message');
my $conv = $ev ? $ev->{args}[0]{conversation} : {};
is_deeply([ $conv->{channel}, $conv->{contact}{name}, $conv->{contact}{phone} ],
          [ 'livechat', 'Nora', undef ],
          '... in a livechat conversation with the visitor (no phone)');
is(say($vt, { text => 'Hi! Do you ship to Norway?', id => 'w1' })
   ->{json}{duplicates}, 1, 'the widget sends w1 again: stored once');
say($vt, { type => 'image', content => { media => {
    url => 'https://example.com/parcel.jpg' }, caption => 'this one' } });
is(psql("SELECT count(*) FROM messages WHERE conversation_id = '$conv->{id}'"),
   2, 'an image too');

for my $bad ([ {}, 'nothing to say' ], [ { text => '' }, 'empty text' ],
             [ { text => 'x' x 4097 }, 'over 4096 characters' ],
             [ { type => 'video', content => {} }, 'a type it cannot send' ],
             [ { type => 'image', content => { media => { url => 'file:///etc/passwd' } } },
               'a file: URL' ],
             [ { text => 'x', id => '' }, 'an empty id' ])
{
    is(say($vt, $bad->[0])->{status}, 400, "a message with $bad->[1]: 400");
}
is(api($t, 'POST', '/api/v1/channels/live-chat/message', token => $vt,
       raw => '{"text": ')->{status}, 400, 'malformed JSON: 400');
is(api($t, 'POST', '/api/v1/channels/live-chat/message',
       body => { text => 'anon' })->{status}, 401, 'no token: 401');
is(api($t, 'POST', '/api/v1/channels/live-chat/message',
       token => user_token($admin, $ta, 'ADMIN'), body => { text => 'x' })
   ->{status}, 403, 'an agent\'s token: 403');

# --- the visitor's view: no notes
api($t, 'POST', '/api/v1/messages', token => user_token($admin, $ta, 'ADMIN'),
    body => { conversationId => $conv->{id}, content => 'VIP, be nice',
              private => JSON::PP::true });
$r = api($t, 'GET', '/api/v1/channels/live-chat/messages', token => $vt);
is($r->{status}, 200, 'GET /channels/live-chat/messages: 200');
is_deeply([ map { $_->{type} } @{ $r->{json}{data} } ], [ 'image', 'text' ],
          '... the visitor\'s two messages, newest first, no private note');
ok(!exists $r->{json}{data}[0]{senderId}, '... and no agents\' details');
my $other = api($t, 'POST', '/api/v1/channels/live-chat/session',
                body => { widgetKey => $widget })->{json}{token};
is_deeply(api($t, 'GET', '/api/v1/channels/live-chat/messages',
              token => $other)->{json}{data}, [],
          'another visitor of the widget sees nothing of it');

# --- a visitor's token opens nothing else
for my $req ([ GET => '/api/v1/conversations' ], [ GET => '/api/v1/contacts' ],
             [ GET => '/api/v1/auth/me' ],
             [ GET => "/api/v1/conversations/$conv->{id}/messages" ])
{
    is(api($t, $req->[0], $req->[1], token => $vt)->{status}, 403,
       "$req->[0] $req->[1] with a visitor's token: 403");
}
my $forged = jwt_for({ userId => $s->{visitorId}, tenantId => $ta,
                       role => 'VISITOR', iat => int(time),
                       exp => int(time) + 60 });
is(api($t, 'GET', '/api/v1/channels/live-chat/messages', token => $forged)
   ->{status}, 401, 'a VISITOR token without its widget: 401');

# --- the visitor's socket: its own room
my $vs = node_start('sio-client.js', args => [ "http://127.0.0.1:$port/chat" ],
                    env => { TOKEN => $vt });
ok($vs->wait_for(sub { $_[0]{event} eq 'connect' }, 2 * $W),
   'the visitor\'s socket connects with its token');
$vs->write_json({ emit => 'join_conversation', args => [ $conv->{id} ],
                  ack => JSON::PP::true });
my $ack = $vs->wait_for(sub { $_[0]{event} eq 'ack' }, $W);
is($ack && $ack->{args}[0]{error}, 'unknown event',
   '... it may not join agents\' rooms');
say($vt, { text => 'still there?' });
ok(!$vs->wait_for('new_message', 0.5),
   '... and does not hear the tenant\'s events, its own included');
is(api($t, 'POST', '/hubs/orchestrator/negotiate?negotiateVersion=1',
       token => $vt)->{status}, 403, 'SignalR refuses a visitor\'s token');
is(api($t, 'POST', '/hubs/orchestrator/negotiate?negotiateVersion=1',
       token => user_token($admin, $ta, 'ADMIN'))->{status}, 200,
   '... and takes an agent\'s');

$vs->stop;
$agent_sock->stop;
$t->stop;
no_bad_log($t);

done_testing;
