# Facebook Messenger end to end (src/channels/orbit_meta.c, the shared
# pipeline, 010_meta.sql): Meta's verification GET, signed page webhooks
# routed by the page id, every kind of messaging[] event normalized, a
# customer's message listed by the inbox API, the agent's answer sent to
# the fake Graph API exactly as the Send API takes it, its delivery and
# read (by watermark) coming back signed; echoes ignored, duplicates
# stored once, malformed or foreign payloads refused with nothing stored,
# Graph errors failing the message with their reason, 5xx retried, read
# receipts and typing indicators as sender actions; another tenant sees
# none of it.

use strict;
use warnings;
use Test::More;
use File::Spec;
use Time::HiRes qw(time sleep);
use Orbit::Test;
use Orbit::Node;
use Orbit::Fake;
use Orbit::FakeMeta;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $W = Orbit::Nginx::valgrind_enabled() ? 30 : 8;

my $fb = Orbit::Fake->start('meta');

my $servroot = File::Spec->rel2abs($ENV{TEST_NGINX_SERVROOT}
                                   // 't/servroot');
my $HTTP = <<"_EOC_";
orbit_channel_api messenger @{[ $fb->url ]}/v21.0;
orbit_jobs_backoff 200ms max=1s;
orbit_jobs_poll 1s;
orbit_media local $servroot/media;
orbit_media_fetch_allow 127.0.0.1;    # the CDN's stand-in; not 127.0.0.2
_EOC_

# /cdn/ stands for Meta's CDN, where attachments' URLs point
my $t = orbit_nginx(workers => 2, http_extra => $HTTP,
                    config => "location /socket.io/ { orbit_socketio; }\n"
                              . "location /cdn/ { root html; }\n");
$t->start;

my $hook = "http://127.0.0.1:$port/api/v1/channels/messenger/webhook";
my $app_secret = secret('META_APP_SECRET');

# --- two tenants; A connects its page
my $ta = make_tenant('fba');
my $tb = make_tenant('fbb');
my $admin = make_user($ta, 'ADMIN');
my $tok = user_token($admin, $ta, 'ADMIN');
my $tok_b = user_token(make_user($tb, 'ADMIN'), $tb, 'ADMIN');
my $page = uniq('10');
my $token = 'EAAB' . uniq('tok');

my $r = api($t, 'POST', '/api/v1/channels', token => $tok,
            body => { channel => 'messenger', name => 'Our page',
                      accountId => $page,
                      credentials => { accessToken => $token } });
is($r->{status}, 201, 'a Facebook page connected') or diag($r->{body});
my $conn = $r->{json}{id};
meta_tokens($fb, $page => $token);

sub emit {
    my ($payload, %o) = @_;
    return $fb->emit(url => $hook, secret => $app_secret,
                     payload => $payload, %o);
}
sub count { return psql(shift) + 0 }
sub message_row {
    my ($id) = @_;
    my %m;
    @m{qw(status provider error)} = split /\|/,
        psql("SELECT status, coalesce(provider_message_id, ''),"
             . " coalesce(error::text, '') FROM messages WHERE id = '$id'");
    return \%m;
}
sub sends {
    my (%f) = @_;
    return @{ $fb->calls(path => "/v21.0/$page/messages", %f) };
}

# --- the verification GET
my $vt = secret('META_VERIFY_TOKEN');
$r = $t->http_get("/api/v1/channels/messenger/webhook?hub.mode=subscribe"
                  . "&hub.verify_token=$vt&hub.challenge=8812");
is($r->{status}, 200, 'GET with the verify token: 200');
is($r->{body}, '8812', '... the challenge verbatim');
$r = $t->http_get("/api/v1/channels/messenger/webhook?hub.mode=subscribe"
                  . "&hub.verify_token=nope&hub.challenge=1");
is($r->{status}, 403, 'a wrong verify token: 403');

my $sock = node_start('sio-client.js',
                      args => [ "http://127.0.0.1:$port/chat" ],
                      env => { TOKEN => $tok });
ok($sock->wait_for(sub { $_[0]{event} eq 'connect' }, 2 * $W),
   'the admin\'s socket connects');

# --- a customer writes
my $psid = uniq('69');
my $mid = meta_mid();
$r = emit(meta_text(page => $page, psid => $psid, mid => $mid,
                    text => 'Is the blue one in stock?'));
is($r->{status}, 200, 'a signed message: 200') or diag(explain($r));
is_deeply($r->{json}, { received => 1, stored => 1, duplicates => 0,
                        statuses => 0, unknownAccounts => 0,
                        unknownMessages => 0 }, '... stored');
my $ev = $sock->wait_for('new_message', $W);
is($ev && $ev->{args}[0]{content}{text}, 'Is the blue one in stock?',
   'new_message reaches the inbox');

my $conv = psql("SELECT conversation_id FROM messages WHERE tenant_id = '$ta'"
                . " AND provider_message_id = '$mid'");
ok($conv, '... into a conversation');
is(psql("SELECT c.channel || ' ' || (c.connection_id = '$conn') || ' '"
        . " || (k.phone IS NULL) FROM conversations c JOIN contacts k"
        . " ON k.id = c.contact_id WHERE c.id = '$conv'"),
   'messenger true true', '... on messenger, of a contact without phone');
is(count("SELECT count(*) FROM contact_identities WHERE tenant_id = '$ta'"
         . " AND channel = 'messenger' AND external_id = '$psid'"), 1,
   '... known by the PSID');

$r = api($t, 'GET', '/api/v1/conversations?channel=messenger', token => $tok);
is_deeply([ map { $_->{id} } @{ $r->{json}{data} // [] } ], [ $conv ],
          'GET /conversations lists it');
$r = api($t, 'GET', "/api/v1/conversations/$conv/messages", token => $tok);
is_deeply([ map { [ $_->{type}, $_->{content}{text}, $_->{direction} ] }
            @{ $r->{json}{data} // [] } ],
          [ [ 'text', 'Is the blue one in stock?', 'inbound' ] ],
          'GET /conversations/:id/messages returns the message');
my $in_id = $r->{json}{data}[0]{id};

# --- isolation
$r = api($t, 'GET', '/api/v1/conversations?channel=messenger',
         token => $tok_b);
is(scalar @{ $r->{json}{data} // [] }, 0, 'another tenant lists nothing');
$r = api($t, 'GET', "/api/v1/conversations/$conv/messages", token => $tok_b);
is($r->{status}, 404, '... and cannot read it');

# --- the same mid again: once
$r = emit(meta_text(page => $page, psid => $psid, mid => $mid,
                    text => 'Is the blue one in stock?'));
is($r->{json}{duplicates}, 1, 'the same mid again: a duplicate');
is(count("SELECT count(*) FROM messages WHERE conversation_id = '$conv'"),
   1, '... stored once');

# --- every kind of event
sub last_of {
    my ($pmid) = @_;
    return JSON::PP->new->utf8->decode(psql(
        "SELECT json_build_object('type', type, 'content', content, 'reply',"
        . " coalesce(reply_to_id::text, '')) FROM messages"
        . " WHERE conversation_id = '$conv'"
        . " AND provider_message_id = '$pmid'") || 'null');
}
my $qr = meta_mid();
emit(meta_text(page => $page, psid => $psid, mid => $qr, text => 'Red',
               quick_reply => 'COLOR_RED', reply_to => $mid));
my $m = last_of($qr);
is_deeply([ $m->{type}, $m->{content} ],
          [ 'button', { text => 'Red', button => { text => 'Red',
                                                   payload => 'COLOR_RED' } } ],
          'a quick reply: a button with its payload');
is($m->{reply}, $in_id, '... replying to the message it names');

my %att = (image => 'image', video => 'video', audio => 'audio',
           file => 'document');
for my $kind (sort keys %att) {
    my $am = meta_mid();
    emit(meta_attachment(page => $page, psid => $psid, mid => $am,
                         type => $kind, url => "https://cdn.fb.example/$kind"));
    $m = last_of($am);
    is_deeply([ $m->{type}, $m->{content}{media} ],
              [ $att{$kind}, { provider => 'messenger',
                               url => "https://cdn.fb.example/$kind" } ],
              "an attachment of type $kind: $att{$kind}, its URL kept");
}
my $fm = meta_mid();
emit(meta_attachment(page => $page, psid => $psid, mid => $fm,
                     type => 'fallback', text => 'look',
                     payload => { url => 'https://shop.example/x',
                                  title => 'Blue shirt' }));
$m = last_of($fm);
is_deeply($m, { type => 'unsupported', reply => '', content => {
    media => { provider => 'messenger', url => 'https://shop.example/x',
               title => 'Blue shirt' },
    unsupported => { type => 'fallback', payload => {
        url => 'https://shop.example/x', title => 'Blue shirt' } },
    caption => 'look' } }, 'a fallback: unsupported, its URL and title kept');
my $two = meta_mid();
emit(meta_attachment(page => $page, psid => $psid, mid => $two,
                     attachments => [ map { { type => 'image', payload => {
                         url => "https://a.example/$_" } } } 1, 2 ]));
is(scalar @{ last_of($two)->{content}{attachments} // [] }, 2,
   'two images: both kept');

my $pb = meta_mid();
emit(meta_postback(page => $page, psid => $psid, mid => $pb,
                   title => 'Talk to a human', payload => 'HUMAN'));
is_deeply(last_of($pb)->{content}, { text => 'Talk to a human',
    interactive => { type => 'postback', id => 'HUMAN',
                     title => 'Talk to a human' } },
          'a postback: interactive, its payload as the id');
my $ts = int(time * 1000) - 5000;
my $nomid = meta_postback(page => $page, psid => $psid, mid => undef,
                          timestamp => $ts);
emit($nomid);
$r = emit($nomid);
is($r->{json}{duplicates}, 1, 'a postback without mid, again: a duplicate');

$r = emit(meta_reaction(page => $page, psid => $psid, mid => $mid,
                        action => 'react'));
is($r->{json}{stored}, 1, 'a reaction is stored');
is(count("SELECT count(*) FROM messages WHERE conversation_id = '$conv'"
         . " AND type = 'reaction' AND reply_to_id = '$in_id'"
         . " AND content->'reaction'->>'messageId' = '$mid'"), 1,
   '... on the message it names');
emit(meta_reaction(page => $page, psid => $psid, mid => $mid,
                   action => 'unreact'));
is(count("SELECT count(*) FROM messages WHERE conversation_id = '$conv'"
         . " AND type = 'reaction' AND NOT content ? 'emoji'"), 1,
   'an unreact: a reaction without emoji');

# --- ignored: echoes, standby
my $before = count("SELECT count(*) FROM messages WHERE tenant_id = '$ta'");
$r = emit(meta_echo(page => $page, psid => $psid, text => 'from the page'));
is($r->{status}, 200, 'an echo: 200');
is($r->{json}{received}, 0, '... nothing taken');
$r = emit({ object => 'page', entry => [ { id => $page, time => 1,
            standby => [ { sender => { id => $psid },
                           recipient => { id => $page }, timestamp => 1,
                           message => { mid => meta_mid(), text => 'x' } } ]
          } ] });
is($r->{status}, 200, 'standby[]: 200');
is(count("SELECT count(*) FROM messages WHERE tenant_id = '$ta'"), $before,
   '... nothing stored');

# --- refused: signature, JSON, object, page
my $raw = JSON::PP->new->canonical->encode(
    meta_text(page => $page, psid => $psid, text => 'unsigned'));
$r = emit(undef, bytes => $raw, signature => undef);
is($r->{status}, 403, 'no signature: 403');
$r = emit(undef, bytes => $raw, signature => hub_signature('wrong', $raw));
is($r->{status}, 403, 'a wrong signature: 403');
$r = emit(undef, bytes => '{"object": "page", "entry": [', );
is($r->{status}, 400, 'malformed JSON, signed: 400');
$r = emit(meta_text(page => $page, psid => $psid, object => 'instagram'));
is($r->{status}, 400, 'object instagram on the Messenger webhook: 400');
like($r->{body}, qr/object must be page/, '... saying why');
$r = emit({ object => 'whatsapp_business_account', entry => [] });
is($r->{status}, 400, 'a WhatsApp payload: 400');
$r = emit({ object => 'page', entry => [ { id => $page, messaging => [
            { sender => { id => $psid }, timestamp => 1,
              message => { text => 'no mid' } } ] } ] });
is($r->{status}, 400, 'a message without mid: 400');
$r = emit(meta_text(page => 'no' . uniq('page'), psid => $psid));
is($r->{status}, 404, 'an unknown page: 404');
is(count("SELECT count(*) FROM messages WHERE tenant_id = '$ta'"), $before,
   'nothing stored');

# --- the agent answers
meta_auto_status($fb, url => $hook, app_secret => $app_secret,
                 statuses => [ 'delivery' ], echo => 1, delay => 20);
sub send_msg {
    my (%b) = @_;
    my $r = api($t, 'POST', '/api/v1/messages', token => $tok,
                body => { conversationId => $conv, %b });
    die "send: $r->{status} $r->{body}" unless $r->{status} == 201;
    return $r->{json};
}
my $n0 = sends();
my $out = send_msg(content => 'Yes, in all sizes.');
ok(wait_until($W, sub { sends(outcome => 'sent') == 1 }),
   'the fake Graph API receives the answer');
my ($call) = sends(outcome => 'sent');
is($call->{headers}{authorization}, "Bearer $token",
   '... with the page\'s token as Bearer');
is_deeply($call->{json}, { recipient => { id => $psid },
                           messaging_type => 'RESPONSE',
                           message => { text => 'Yes, in all sizes.' } },
          '... exactly the Send API\'s body');
ok(wait_until($W, sub { message_row($out->{id})->{status} eq 'delivered' }),
   'its echo is ignored, its delivery (by mid) moves it to delivered')
    or diag(explain(message_row($out->{id})));
is(message_row($out->{id})->{provider}, $call->{mid},
   '... the message has the provider\'s mid');
ok(wait_until($W, sub { grep { ($_->{responseBody} // '') =~ /"received":0/ }
                        @{ $fb->outbox } }), '... the echo taken, unstored');

# an image, by URL; a caption cannot go
my $img = send_msg(type => 'image', content => { media => {
    url => 'https://cdn.example/p.jpg' } });
ok(wait_until($W, sub { sends(outcome => 'sent') == 2 }), 'an image is sent');
is_deeply((sends(outcome => 'sent'))[1]{json}{message},
          { attachment => { type => 'image', payload => {
              url => 'https://cdn.example/p.jpg',
              is_reusable => JSON::PP::true } } },
          '... as an attachment by URL');
my $doc = send_msg(type => 'document', content => { media => {
    url => 'https://cdn.example/a.pdf' }, caption => 'the invoice' });
ok(wait_until($W, sub { message_row($doc->{id})->{status} eq 'failed' }),
   'a document with a caption: failed')
    or diag(explain(message_row($doc->{id})));
like(message_row($doc->{id})->{error}, qr/no caption/, '... saying why');

# --- the read watermark
meta_auto_status($fb);
my $w1 = send_msg(content => 'one');
my $w2 = send_msg(content => 'two');
ok(wait_until($W, sub { message_row($w2->{id})->{status} eq 'sent'
                        && message_row($w1->{id})->{status} eq 'sent' }),
   'two more sent');
my $wm = int(time * 1000);
sleep 0.05;
$r = emit(meta_delivery(page => $page, psid => $psid, watermark => $wm));
is($r->{json}{statuses}, 1, 'a delivery watermark without mids: applied');
is(join(' ', map { message_row($_)->{status} } $w1->{id}, $w2->{id}),
   'delivered delivered', '... both delivered');
$r = emit(meta_read(page => $page, psid => $psid, watermark => $wm));
is($r->{json}{statuses}, 1, 'a read watermark: applied');
is(join(' ', map { message_row($_)->{status} }
           $out->{id}, $img->{id}, $w1->{id}, $w2->{id}),
   'read read read read', '... every message sent before it is read');
is(message_row($doc->{id})->{status}, 'failed', '... the failed one stays');
ok($sock->wait_for(sub { $_[0]{event} eq 'message_status'
                         && $_[0]{args}[0]{messageId} eq $w2->{id}
                         && $_[0]{args}[0]{status} eq 'read' }, $W),
   '... and the inbox hears of each');
my $later = send_msg(content => 'after the watermark');
ok(wait_until($W, sub { message_row($later->{id})->{status} eq 'sent' }),
   'a message after it is sent');
$r = emit(meta_read(page => $page, psid => $psid, watermark => $wm));
is(message_row($later->{id})->{status}, 'sent',
   '... and not read by an older watermark');
is_deeply($r->{json}, { received => 1, stored => 0, duplicates => 0,
                        statuses => 0, unknownAccounts => 0,
                        unknownMessages => 0 }, '... which is stale');
$r = emit(meta_read(page => $page, psid => uniq('99'), watermark => $wm));
is($r->{json}{unknownMessages}, 1, 'a watermark of a stranger: unknown');
$r = emit(meta_read(page => 'no' . uniq('p'), psid => $psid));
is($r->{status}, 404, 'a watermark of an unknown page: 404');

# --- Graph errors
$fb->force({ error => 551, path => "/v21.0/$page/messages" });
my $gone = send_msg(content => 'are you there?');
ok(wait_until($W, sub { message_row($gone->{id})->{status} eq 'failed' }),
   'a Graph error (551): failed');
like(message_row($gone->{id})->{error}, qr/"code": ?551/, '... its code');
like(message_row($gone->{id})->{error}, qr/isn't available right now/,
     '... and title');
sleep 0.5;
is(psql("SELECT attempts || ' ' || status FROM jobs WHERE kind ="
        . " 'message.send' AND payload->>'messageId' = '$gone->{id}'"),
   '1 failed', '... not tried again');

$fb->force({ status => 500, times => 2, path => "/v21.0/$page/messages" });
my $retried = send_msg(content => 'after two 500s');
ok(wait_until($W, sub { message_row($retried->{id})->{status} eq 'sent' }),
   '500, 500, then sent');
is(scalar(grep { ($_->{json}{message}{text} // '') eq 'after two 500s' }
          sends()), 3, '... on the third try');
$fb->force({ error => 613, path => "/v21.0/$page/messages" });
my $throttled = send_msg(content => 'throttled once');
ok(wait_until($W, sub { message_row($throttled->{id})->{status} eq 'sent' }),
   'a throttling error (613): retried, then sent');

# --- the page's token refused
psql("UPDATE channel_connections SET config = '{\"humanAgentTag\": true}'"
     . " WHERE id = '$conn'");
my $tagged = send_msg(content => 'a week later');
ok(wait_until($W, sub { message_row($tagged->{id})->{status} eq 'sent' }),
   'with config.humanAgentTag');
my ($tc) = grep { ($_->{json}{message}{text} // '') eq 'a week later' }
           sends();
is_deeply([ @{ $tc->{json} }{qw(messaging_type tag)} ],
          [ 'MESSAGE_TAG', 'HUMAN_AGENT' ], '... sent as HUMAN_AGENT');
meta_tokens($fb, $page => 'another-token');
my $unauth = send_msg(content => 'with a stale token');
ok(wait_until($W, sub { message_row($unauth->{id})->{status} eq 'failed' }),
   'a token Graph refuses (190): failed');
like(message_row($unauth->{id})->{error}, qr/"code": ?190/, '... code 190');
meta_tokens($fb, $page => $token);

# --- read receipts: mark_seen
emit(meta_text(page => $page, psid => $psid, text => 'thanks'));
$r = api($t, 'POST', "/api/v1/conversations/$conv/read", token => $tok);
is($r->{status}, 200, 'the agent reads the conversation');
ok(wait_until($W, sub { sends(outcome => 'action') }),
   'the fake receives a sender action');
is_deeply((sends(outcome => 'action'))[0]{json},
          { recipient => { id => $psid }, sender_action => 'mark_seen' },
          '... mark_seen to the customer');

# --- typing: the agent's, on the inbox socket, as sender actions
sub emit_ack {
    my ($name, @args) = @_;
    $sock->write_json({ emit => $name, args => \@args,
                        ack => JSON::PP::true });
    my $ack = $sock->wait_for(sub { $_[0]{event} eq 'ack'
                                    && $_[0]{of} eq $name }, $W);
    return $ack ? $ack->{args}[0] : undef;
}
is(emit_ack(join_conversation => $conv)->{ok}, JSON::PP::true,
   'the agent joins the conversation');
for my $on (1, 0) {
    my $want = $on ? 'typing_on' : 'typing_off';
    is(emit_ack(typing => { conversationId => $conv,
                            isTyping => $on ? JSON::PP::true
                                            : JSON::PP::false })->{ok},
       JSON::PP::true, "typing $on: acknowledged");
    ok(wait_until($W, sub { grep { ($_->{action} // '') eq $want }
                            sends(outcome => 'action') }),
       "... the fake receives $want");
}
is_deeply((grep { ($_->{action} // '') eq 'typing_on' }
           sends(outcome => 'action'))[0]{json},
          { recipient => { id => $psid }, sender_action => 'typing_on' },
          '... to the customer');
my $wa_conv = make_conversation($ta);
emit_ack(join_conversation => $wa_conv);
emit_ack(typing => { conversationId => $wa_conv, isTyping => JSON::PP::true });
is(count("SELECT count(*) FROM jobs WHERE kind = 'message.typing'"
         . " AND payload->>'conversationId' = '$wa_conv'"), 0,
   'a conversation whose channel shows no typing: no job');
is(count("SELECT count(*) FROM jobs WHERE kind = 'message.typing'"
         . " AND tenant_id = '$ta'"), 2, '... one job per indicator');

# --- an attachment's bytes are fetched from the CDN and kept
my $jpeg = "\xff\xd8\xff\xe0" . join('', map { chr(($_ * 11) % 256) } 1 .. 4000);
mkdir $t->html_dir . '/cdn';
open my $cdn, '>', $t->html_dir . '/cdn/photo.jpg' or die $!;
binmode $cdn;
print $cdn $jpeg;
close $cdn;
my $amid = meta_mid();
$r = emit(meta_attachment(page => $page, psid => $psid, mid => $amid,
                          type => 'image',
                          url => "http://127.0.0.1:$port/cdn/photo.jpg"));
is($r->{status}, 200, 'an image attachment comes in');
my $kept;
ok(wait_until($W, sub {
    $kept = psql("SELECT content->'media'->>'mediaId' FROM messages"
                 . " WHERE provider_message_id = '$amid'");
    $kept }), '... its bytes are fetched from the CDN URL (no hook needed)');
$r = api($t, 'GET', "/api/v1/media/$kept", token => $tok);
ok($r->{status} == 200 && $r->{body} eq $jpeg, '... and kept: the same bytes');
is($r->{headers}{'content-type'}, 'image/jpeg', '... with the CDN\'s type');

# --- a URL to our own network is never fetched (only 127.0.0.1 is allowed
# here, for the CDN's stand-in)
my $inner = meta_mid();
$r = emit(meta_attachment(page => $page, psid => $psid, mid => $inner,
                          type => 'image',
                          url => "http://127.0.0.2:$port/cdn/photo.jpg"));
is($r->{status}, 200, 'an attachment whose URL names a private address');
my $job;
ok(wait_until($W, sub {
    $job = psql("SELECT j.status || '|' || j.attempts || '|' || j.last_error"
                . " FROM jobs j JOIN messages m"
                . " ON m.id::text = j.payload->>'messageId'"
                . " WHERE j.kind = 'media.fetch'"
                . " AND m.provider_message_id = '$inner'");
    $job =~ /^failed/ }), '... is not fetched: failed for good')
    or diag($job);
like($job, qr/^failed\|1\|.*not a public one/, '... at once, saying why');

# --- a delivery that outruns its send's commit: kept, applied when the
# send commits, and the event says delivered
meta_auto_status($fb, url => undef);
my $early = 'm_' . uniq('early');
$r = emit(meta_delivery(page => $page, psid => $psid, mids => [ $early ]));
is($r->{status}, 200, 'a delivery for a message not known yet: 200');
is($r->{json}{unknownMessages}, 1, '... unknown for now');
is(count("SELECT count(*) FROM early_statuses WHERE connection_id = '$conn'"
         . " AND provider_message_id = '$early'"), 1, '... kept');
$fb->force({ status => 200, path => "/v21.0/$page/messages",
             body => { recipient_id => $psid, message_id => $early } });
my $late = send_msg(content => 'The parcel left.');
ok(wait_until($W, sub { message_row($late->{id})->{status} eq 'delivered' }),
   'the send commits with the provider\'s id: the delivery applies')
    or diag(explain(message_row($late->{id})));
is(message_row($late->{id})->{provider}, $early, '... its provider id');
is(count("SELECT count(*) FROM early_statuses"
         . " WHERE provider_message_id = '$early'"), 0, '... and is spent');
$ev = $sock->wait_for(sub { $_[0]{event} eq 'message_status'
                            && $_[0]{args}[0]{messageId} eq $late->{id} }, $W);
is($ev && $ev->{args}[0]{status}, 'delivered',
   'message_status says delivered, not sent');

$sock->stop;
$t->stop;
$fb->stop;
no_bad_log($t);

done_testing;
