# Outbound delivery end to end (src/channels/orbit_outbound.c on the job
# queue): a customer writes on WhatsApp (the fake Graph API signs the
# webhook), an agent answers over REST, the fake receives exactly the
# Graph call, its statuses come back signed and move the message to read;
# retries on 5xx and 429, failure for good on a Graph error with its
# reason, read receipts; the API channel's signed delivery with its
# idempotency key; a live-chat reply pushed to the visitor's socket; and
# workers SIGKILLed in the middle of sending: every message reaches the
# provider once.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use Orbit::Test;
use Orbit::Node;
use Orbit::Fake;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $W = Orbit::Nginx::valgrind_enabled() ? 30 : 8;

my $wa = Orbit::Fake->start('whatsapp');
my $peer = Orbit::Fake->start('api-peer');

# A send cut off by a SIGKILL is run again once its lease has passed; by
# then the provider's "sent" status (which names our id) has told us it
# went, so it is not sent twice.  Under valgrind the new workers take
# longer to read that status: a longer lease.
my $LEASE = Orbit::Nginx::valgrind_enabled() ? '30s' : '4s';

my $HTTP = <<"_EOC_";
orbit_channel_api whatsapp @{[ $wa->url ]}/v21.0;
orbit_jobs_backoff 200ms max=1s;
orbit_jobs_lease $LEASE;
orbit_jobs_poll 1s;
_EOC_

my $t = orbit_nginx(workers => 2, http_extra => $HTTP,
                    config => "location /socket.io/ { orbit_socketio; }\n");
$t->start;

my $ta = make_tenant('out');
my $admin = make_user($ta, 'ADMIN');
my $tok = user_token($admin, $ta, 'ADMIN');
my $pn = uniq('8');
my $token = 'EAAG' . uniq('tok');

my $r = api($t, 'POST', '/api/v1/channels', token => $tok,
            body => { channel => 'whatsapp', name => 'Support', accountId => $pn,
                      credentials => { accessToken => $token } });
is($r->{status}, 201, 'a WhatsApp number connected') or diag($r->{body});
$wa->tokens($pn => $token);
my $hook = "http://127.0.0.1:$port/api/v1/whatsapp/webhook";
my $app_secret = secret('META_APP_SECRET');
$wa->auto_status(url => $hook, app_secret => $app_secret,
                 statuses => [ 'sent', 'delivered', 'read' ], delay => 20);

my $sock = node_start('sio-client.js', args => [ "http://127.0.0.1:$port/chat" ],
                      env => { TOKEN => $tok });
ok($sock->wait_for(sub { $_[0]{event} eq 'connect' }, 2 * $W),
   'the admin\'s socket connects');

# --- a customer writes
my $cust = '1444' . substr(uniq(''), -7);
my $in_wamid = wa_wamid();
$r = $wa->emit(url => $hook, app_secret => $app_secret,
               payload => wa_text(phone_number_id => $pn, wa_id => $cust,
                                  name => 'Carla', wamid => $in_wamid,
                                  body => 'Where is my parcel?'));
is($r->{status}, 200, 'the customer\'s message comes in, signed by Meta');
my $conv = psql("SELECT conversation_id FROM messages WHERE tenant_id = '$ta'"
                . " AND provider_message_id = '$in_wamid'");
ok($conv, '... into a conversation');
my $in_id = psql("SELECT id FROM messages WHERE provider_message_id"
                 . " = '$in_wamid'");

sub send_msg {
    my (%b) = @_;
    my $r = api($t, 'POST', '/api/v1/messages', token => $tok,
                body => { conversationId => $conv, %b });
    die "send: $r->{status} $r->{body}" unless $r->{status} == 201;
    return $r->{json};
}
sub message_row {
    my ($id) = @_;
    my %m;
    @m{qw(status provider error)} = split /\|/,
        psql("SELECT status, coalesce(provider_message_id, ''),"
             . " coalesce(error::text, '') FROM messages WHERE id = '$id'");
    return \%m;
}
sub calls_for {
    my ($id) = @_;
    return grep { ($_->{json}{biz_opaque_callback_data} // '') eq $id
                  && $_->{outcome} ne 'forced' }
           @{ $wa->calls(path => "/v21.0/$pn/messages") };
}

# --- an agent answers: the exact Graph call, then the statuses
my $m = send_msg(content => 'It ships today.', replyToId => $in_id);
ok(wait_until($W, sub { calls_for($m->{id}) == 1 }),
   'the fake Graph API receives the reply');
my ($call) = calls_for($m->{id});
is($call->{headers}{authorization}, "Bearer $token",
   '... with the connection\'s token (decrypted)');
is_deeply($call->{json}, {
    messaging_product => 'whatsapp', recipient_type => 'individual',
    to => $cust, type => 'text',
    text => { preview_url => JSON::PP::false, body => 'It ships today.' },
    context => { message_id => $in_wamid },
    biz_opaque_callback_data => $m->{id} },
    '... exactly: to the customer, a reply to their message, our id along');
ok(wait_until($W, sub { message_row($m->{id})->{status} eq 'read' }),
   'its statuses come back signed: sent, delivered, read')
    or diag(explain(message_row($m->{id})));
is(message_row($m->{id})->{provider}, $call->{wamid},
   '... and the message has the provider\'s id');
my $ev = $sock->wait_for(sub { $_[0]{event} eq 'message_status'
                               && $_[0]{args}[0]{messageId} eq $m->{id}
                               && $_[0]{args}[0]{status} eq 'read' }, $W);
ok($ev, 'message_status events reach the inbox');

# --- other types
my $img = send_msg(type => 'image', content => { media => {
    url => 'https://cdn.example/p.jpg' }, caption => 'your parcel' });
my $tpl = send_msg(type => 'template', content => { template => {
    name => 'order_update', language => 'en_US',
    components => [ { type => 'body', parameters => [
        { type => 'text', text => '#123' } ] } ] } });
ok(wait_until($W, sub { calls_for($img->{id}) && calls_for($tpl->{id}) }),
   'an image and a template are sent');
is_deeply((calls_for($img->{id}))[0]{json}{image},
          { link => 'https://cdn.example/p.jpg', caption => 'your parcel' },
          '... the image by link, with its caption');
is_deeply((calls_for($tpl->{id}))[0]{json}{template}{language},
          { code => 'en_US' }, '... the template\'s language as Graph wants');

# --- a note never leaves
my $note = send_msg(content => 'internal', private => JSON::PP::true);
sleep 0.5;
is(scalar calls_for($note->{id}), 0, 'a private note is not sent');

# --- retries
$wa->force({ status => 500, times => 2, path => "/v21.0/$pn/messages" });
my $m2 = send_msg(content => 'after two 500s');
ok(wait_until($W, sub { message_row($m2->{id})->{status} =~ /^(sent|delivered|read)$/ }),
   '500, 500, then taken: sent');
is(scalar @{ $wa->calls(path => "/v21.0/$pn/messages", outcome => 'forced') }
   >= 2 ? 1 : 0, 1, '... after the two forced failures');
is(scalar calls_for($m2->{id}), 1, '... and delivered once');

my $t0 = time;
$wa->force({ status => 429, headers => { 'Retry-After' => '2' }, times => 1,
             path => "/v21.0/$pn/messages" });
my $m3 = send_msg(content => 'after a 429');
ok(wait_until($W, sub { calls_for($m3->{id}) == 1 }), '429, then sent')
    or diag(explain([ map { [ $_->{outcome}, $_->{response}{status} ] }
                      @{ $wa->calls(path => "/v21.0/$pn/messages") } ]));
cmp_ok(time - $t0, '>=', 1.9, '... not before its Retry-After');

# --- failed for good, with the provider's reason
$wa->force({ error => 131047, times => 1, path => "/v21.0/$pn/messages" });
my $m4 = send_msg(content => 'too late');
ok(wait_until($W, sub { message_row($m4->{id})->{status} eq 'failed' }),
   'a Graph error (131047): failed');
like(message_row($m4->{id})->{error}, qr/"code": ?131047/,
     '... with the provider\'s code');
sleep 1;
is(psql("SELECT attempts || ' ' || status FROM jobs WHERE kind = 'message.send'"
        . " AND payload->>'messageId' = '$m4->{id}'"), '1 failed',
   '... and never tried again');
ok($sock->wait_for(sub { $_[0]{event} eq 'message_status'
                         && $_[0]{args}[0]{messageId} eq $m4->{id}
                         && $_[0]{args}[0]{status} eq 'failed' }, $W),
   '... the inbox hears it failed');

# --- read receipts
$r = api($t, 'POST', "/api/v1/conversations/$conv/read", token => $tok);
is($r->{status}, 200, 'the agent reads the conversation');
ok(wait_until($W, sub { grep { ($_->{json}{status} // '') eq 'read' }
                        @{ $wa->calls(path => "/v21.0/$pn/messages") } }),
   'the fake receives a mark-as-read');
my ($read) = grep { ($_->{json}{status} // '') eq 'read' }
             @{ $wa->calls(path => "/v21.0/$pn/messages") };
is_deeply($read->{json}, { messaging_product => 'whatsapp', status => 'read',
                           message_id => $in_wamid },
          '... for the customer\'s newest message');

# --- the API channel: signed, with its idempotency key
$r = api($t, 'POST', '/api/v1/channels', token => $tok,
         body => { channel => 'api', name => 'Bridge',
                   config => { webhookUrl => $peer->url . '/hook' } });
my ($account, $psecret) = @{ $r->{json} }{qw(accountId secret)};
$peer->secret($psecret);
$r = $peer->emit(url => "http://127.0.0.1:$port/api/v1/channels/api/$account/webhook",
                 secret => $psecret, payload => { messages => [ {
                     id => 'pm-1', from => { id => 'u-9', name => 'Ivo' },
                     timestamp => int(time), type => 'text', text => 'hi' } ] });
is($r->{status}, 200, 'a message comes in on the API channel');
my $aconv = psql("SELECT conversation_id FROM messages WHERE tenant_id = '$ta'"
                 . " AND provider_message_id = 'pm-1'");
$r = api($t, 'POST', '/api/v1/messages', token => $tok,
         body => { conversationId => $aconv, content => 'hello Ivo' });
my $am = $r->{json};
ok(wait_until($W, sub { grep { $_->{outcome} eq 'accepted' } @{ $peer->calls } }),
   'the peer accepts our signed delivery');
my ($pcall) = grep { $_->{outcome} eq 'accepted' } @{ $peer->calls };
is($pcall->{headers}{'x-orbit-delivery'}, $am->{id},
   '... keyed by our message id');
is_deeply([ @{ $pcall->{json} }{qw(event id type)}, $pcall->{json}{to}{id},
            $pcall->{json}{content}{text} ],
          [ 'message', $am->{id}, 'text', 'u-9', 'hello Ivo' ],
          '... in the channel\'s format');
ok(wait_until($W, sub { message_row($am->{id})->{status} eq 'sent' }),
   '... sent, with the peer\'s id') or diag(explain(message_row($am->{id})));
my $pid = message_row($am->{id})->{provider};
$peer->emit(url => "http://127.0.0.1:$port/api/v1/channels/api/$account/webhook",
            secret => $psecret, payload => { statuses => [ {
                id => $pid, status => 'delivered', timestamp => int(time) } ] });
is(message_row($am->{id})->{status}, 'delivered',
   'the peer\'s status moves it to delivered');

# --- live chat: the reply goes to the visitor's socket
my $widget = uniq('lc_');
psql("INSERT INTO channel_connections (tenant_id, channel, name, account_id)"
     . " VALUES ('$ta', 'livechat', 'Site', '$widget')");
my $vt = api($t, 'POST', '/api/v1/channels/live-chat/session',
             body => { widgetKey => $widget })->{json}{token};
api($t, 'POST', '/api/v1/channels/live-chat/message', token => $vt,
    body => { text => 'anyone?' });
my $vconv = psql("SELECT c.id FROM conversations c JOIN channel_connections cn"
                 . " ON cn.id = c.connection_id WHERE cn.account_id = '$widget'");
my $vs = node_start('sio-client.js', args => [ "http://127.0.0.1:$port/chat" ],
                    env => { TOKEN => $vt });
ok($vs->wait_for(sub { $_[0]{event} eq 'connect' }, 2 * $W),
   'the visitor\'s socket connects');
$r = api($t, 'POST', '/api/v1/messages', token => $tok,
         body => { conversationId => $vconv, content => 'Yes, how can I help?' });
$ev = $vs->wait_for('new_message', $W);
is($ev && $ev->{args}[0]{content}{text}, 'Yes, how can I help?',
   'the agent\'s reply reaches the visitor\'s socket');
ok(!exists $ev->{args}[0]{senderId}, '... without the agent\'s details');
ok(wait_until($W, sub { message_row($r->{json}{id})->{status} eq 'sent' }),
   '... and is sent');
$vs->stop;

# --- the workers die in the middle of sending: each message once
$wa->reset;
$wa->tokens($pn => $token);
$wa->auto_status(url => $hook, app_secret => $app_secret,
                 statuses => [ 'sent' ], delay => 20);
$wa->delay(400);              # Graph answers late: sends are in flight
my @ids = map { send_msg(content => "burst $_")->{id} } 1 .. 20;
ok(wait_until($W, sub { @{ $wa->calls(path => "/v21.0/$pn/messages") } >= 4 }),
   'the burst is being sent');
kill 'KILL', $t->worker_pids;
ok(wait_until(10, sub { $t->worker_pids == 2 }), 'new workers');
$wa->delay(0);
ok(wait_until(Orbit::Nginx::valgrind_enabled() ? 120 : 40, sub {
       !grep { message_row($_)->{status} eq 'queued' } @ids }),
   'after the leases every message of the burst left the queue')
    or diag(join ' ', map { message_row($_)->{status} } @ids);
my %n;
$n{ $_->{json}{biz_opaque_callback_data} // '' }++
    for @{ $wa->calls(path => "/v21.0/$pn/messages") };
is(scalar(grep { ($n{$_} // 0) == 1 } @ids), 20,
   'each reached the provider exactly once')
    or diag(explain({ map { $_ => $n{$_} // 0 } @ids }));

$sock->stop;
$t->stop;
$wa->stop;
$peer->stop;
no_bad_log($t, allow => qr/exited on signal 9/);

done_testing;
