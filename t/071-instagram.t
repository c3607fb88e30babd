# Instagram DMs end to end (src/channels/orbit_meta.c, the adapter it
# shares with Messenger): signed "object":"instagram" webhooks routed by the
# professional account's id, a customer's DM listed by the inbox API, the
# agent's answer sent to the fake Graph API as the Send API takes it, its
# statuses back (delivery, read by mid, read by watermark); Instagram's
# own shapes (story mentions, shares, deleted messages, comments) taken
# without harm; echoes ignored, duplicates once, malformed, foreign and
# unknown-account payloads refused with nothing stored; Graph errors and
# retries; another tenant sees none of it.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use Orbit::Test;
use Orbit::Fake;
use Orbit::FakeMeta;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $W = Orbit::Nginx::valgrind_enabled() ? 30 : 8;

my $ig = Orbit::Fake->start('meta');

my $HTTP = <<"_EOC_";
orbit_channel_api instagram @{[ $ig->url ]}/v21.0;
orbit_jobs_backoff 200ms max=1s;
orbit_jobs_poll 1s;
_EOC_

my $t = orbit_nginx(workers => 2, http_extra => $HTTP);
$t->start;

my $hook = "http://127.0.0.1:$port/api/v1/channels/instagram/webhook";
my $app_secret = secret('META_APP_SECRET');

my $ta = make_tenant('iga');
my $tb = make_tenant('igb');
my $tok = user_token(make_user($ta, 'ADMIN'), $ta, 'ADMIN');
my $tok_b = user_token(make_user($tb, 'ADMIN'), $tb, 'ADMIN');
my $acct = uniq('1784');
my $token = 'IGQV' . uniq('tok');

my $r = api($t, 'POST', '/api/v1/channels', token => $tok,
            body => { channel => 'instagram', name => 'Our shop',
                      accountId => $acct,
                      credentials => { accessToken => $token } });
is($r->{status}, 201, 'an Instagram account connected') or diag($r->{body});
meta_tokens($ig, $acct => $token, object => 'instagram');

my %IG = (object => 'instagram', page => $acct);
sub emit {
    my ($payload, %o) = @_;
    return $ig->emit(url => $hook, secret => $app_secret,
                     payload => $payload, %o);
}
sub count { return psql(shift) + 0 }
sub status_of { return psql("SELECT status FROM messages WHERE id = '$_[0]'") }
sub sends {
    return @{ $ig->calls(path => "/v21.0/$acct/messages", @_) };
}

# --- the verification GET, on this path too
my $vt = secret('META_VERIFY_TOKEN');
$r = $t->http_get("/api/v1/channels/instagram/webhook?hub.mode=subscribe"
                  . "&hub.verify_token=$vt&hub.challenge=77");
is($r->{status} . ' ' . $r->{body}, '200 77', 'the verification GET');

# --- a DM comes in
my $igsid = uniq('52');
my $mid = meta_mid();
$r = emit(meta_text(%IG, psid => $igsid, mid => $mid, text => 'Price?'));
is($r->{status}, 200, 'a signed DM: 200') or diag(explain($r));
is($r->{json}{stored}, 1, '... stored');
my $conv = psql("SELECT conversation_id FROM messages WHERE tenant_id = '$ta'"
                . " AND provider_message_id = '$mid'");
is(psql("SELECT channel FROM conversations WHERE id = '$conv'"), 'instagram',
   '... in an instagram conversation');
$r = api($t, 'GET', '/api/v1/conversations?channel=instagram', token => $tok);
is_deeply([ map { $_->{id} } @{ $r->{json}{data} // [] } ], [ $conv ],
          'GET /conversations lists it');
$r = api($t, 'GET', "/api/v1/conversations/$conv/messages", token => $tok);
is($r->{json}{data}[0]{content}{text}, 'Price?',
   'GET /conversations/:id/messages returns it');
$r = api($t, 'GET', '/api/v1/conversations?channel=instagram',
         token => $tok_b);
is(scalar @{ $r->{json}{data} // [] }, 0, 'another tenant lists nothing');

$r = emit(meta_text(%IG, psid => $igsid, mid => $mid, text => 'Price?'));
is($r->{json}{duplicates}, 1, 'the same mid again: a duplicate');

# --- Instagram's shapes
my $sm = meta_mid();
emit(meta_attachment(%IG, psid => $igsid, mid => $sm, type => 'story_mention',
                     url => 'https://lookaside.example/story/1'));
is(psql("SELECT type || ' ' || (content->'media'->>'url') || ' '"
        . " || (content->'unsupported'->>'type') FROM messages"
        . " WHERE provider_message_id = '$sm'"),
   'unsupported https://lookaside.example/story/1 story_mention',
   'a story mention: kept with its URL');
my $before = count("SELECT count(*) FROM messages WHERE tenant_id = '$ta'");
$r = emit(meta_event(%IG, psid => $igsid, event => { message => {
              mid => $mid, is_deleted => JSON::PP::true } }));
is($r->{status} . ' ' . $r->{json}{received}, '200 0',
   'a deleted message: taken, ignored');
$r = emit({ object => 'instagram', entry => [ { id => $acct, time => 1,
            changes => [ { field => 'comments', value => {
                id => '1790', from => { id => $igsid, username => 'ana' },
                text => 'nice', media => { id => '1791' } } } ] } ] });
is($r->{status}, 200, 'a comment: taken');
$r = emit(meta_echo(%IG, psid => $igsid));
is($r->{status} . ' ' . $r->{json}{received}, '200 0', 'an echo: ignored');
is(count("SELECT count(*) FROM messages WHERE tenant_id = '$ta'"), $before,
   '... none of them stored');

# --- refused
$r = emit(meta_text(%IG, psid => $igsid), signature => 'sha256=' . '0' x 64);
is($r->{status}, 403, 'a bad signature: 403');
$r = emit(meta_text(psid => $igsid, page => $acct));
is($r->{status}, 400, 'object page on the Instagram webhook: 400');
$r = emit(undef, bytes => 'not json');
is($r->{status}, 400, 'not JSON: 400');
$r = emit(meta_text(%IG, page => uniq('1785'), psid => $igsid));
is($r->{status}, 404, 'an unknown account: 404');
is(count("SELECT count(*) FROM messages WHERE tenant_id = '$ta'"), $before,
   'nothing stored');

# --- the agent answers; delivery, then read by mid
meta_auto_status($ig, url => $hook, app_secret => $app_secret,
                 statuses => [ 'delivery' ], echo => 1, delay => 20);
sub send_msg {
    my (%b) = @_;
    my $r = api($t, 'POST', '/api/v1/messages', token => $tok,
                body => { conversationId => $conv, %b });
    die "send: $r->{status} $r->{body}" unless $r->{status} == 201;
    return $r->{json};
}
my $out = send_msg(content => '25 EUR');
ok(wait_until($W, sub { status_of($out->{id}) eq 'delivered' }),
   'the answer is sent, echoed (ignored) and delivered')
    or diag(status_of($out->{id}));
my ($call) = sends(outcome => 'sent');
is($call->{headers}{authorization}, "Bearer $token", '... with the token');
is_deeply($call->{json}, { recipient => { id => $igsid },
                           messaging_type => 'RESPONSE',
                           message => { text => '25 EUR' } },
          '... exactly the Send API\'s body');
is($call->{object}, 'instagram', '... to an Instagram account');
is(psql("SELECT provider_message_id FROM messages WHERE id = '$out->{id}'"),
   $call->{mid}, '... the message has its mid');
$r = emit(meta_read(%IG, psid => $igsid, mid => $call->{mid}));
is($r->{json}{statuses}, 1, 'read {mid}: applied');
is(status_of($out->{id}), 'read', '... read');

meta_auto_status($ig);
my $a1 = send_msg(type => 'video', content => { media => {
    url => 'https://cdn.example/v.mp4' } });
ok(wait_until($W, sub { status_of($a1->{id}) eq 'sent' }), 'a video is sent');
is_deeply((sends(outcome => 'sent'))[1]{json}{message}{attachment},
          { type => 'video', payload => { url => 'https://cdn.example/v.mp4',
                                          is_reusable => JSON::PP::true } },
          '... by URL');
emit(meta_read(%IG, psid => $igsid, watermark => int(time * 1000)));
is(status_of($a1->{id}), 'read', 'a read watermark reads it');

# --- Graph errors and retries
$ig->force({ error => 10, path => "/v21.0/$acct/messages" });
my $late = send_msg(content => 'outside the window');
ok(wait_until($W, sub { status_of($late->{id}) eq 'failed' }),
   'a Graph error (10): failed');
like(psql("SELECT error::text FROM messages WHERE id = '$late->{id}'"),
     qr/outside of allowed window/, '... with its reason');
$ig->force({ status => 503, times => 2, path => "/v21.0/$acct/messages" });
my $again = send_msg(content => 'after two 503s');
ok(wait_until($W, sub { status_of($again->{id}) eq 'sent' }),
   '503, 503, then sent');
is(scalar(grep { ($_->{json}{message}{text} // '') eq 'after two 503s' }
          sends()), 3, '... on the third try');

$t->stop;
$ig->stop;
no_bad_log($t);

done_testing;
