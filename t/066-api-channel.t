# The API channel, inbound (src/channels/orbit_apichannel.c): an outside
# system (t/node/fake-api-peer.js) posts its users' messages and the
# statuses of ours, signed with the connection's own secret, to
# /api/v1/channels/api/{accountId}/webhook; the pipeline loads that
# connection's credentials before it verifies anything.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use Orbit::Test;
use Orbit::Fake;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;

my $t = orbit_nginx();
$t->start;
my $peer = Orbit::Fake->start('api-peer');

my $ta = make_tenant('apich');
my $admin = make_user($ta, 'ADMIN');
my $tok = user_token($admin, $ta, 'ADMIN');

my $r = api($t, 'POST', '/api/v1/channels', token => $tok,
            body => { channel => 'api', name => 'Bridge',
                      config => { webhookUrl => $peer->url . '/hook' } });
is($r->{status}, 201, 'an API channel connected');
my $account = $r->{json}{accountId};
my $secret = $r->{json}{secret};
ok($account && $secret, '... with an account id and its secret, once');
my $url = "http://127.0.0.1:$port/api/v1/channels/api/$account/webhook";

sub emit {
    my (%o) = @_;
    my $r = $peer->emit(url => $o{url} // $url, secret => $o{secret} // $secret,
                        payload => $o{payload},
                        exists $o{signature} ? (signature => $o{signature}) : ());
    return $r;
}
my $n = 0;
sub msg {
    my (%m) = @_;
    return { id => $m{id} // 'peer-' . uniq('m') . ++$n,
             from => { id => $m{from} // 'user-1', name => 'Ulla',
                       phone => '+4915112345678' },
             timestamp => int(time), type => 'text', text => 'hello', %m };
}

my $e = emit(payload => { messages => [ msg(id => 'p1', text => 'Hallo!') ] });
is($e->{status}, 200, 'a signed message from the peer: 200');
is(psql("SELECT m.content->>'text' || ' ' || c.channel || ' ' || k.phone"
        . " FROM messages m JOIN conversations c ON c.id = m.conversation_id"
        . " JOIN contacts k ON k.id = c.contact_id"
        . " WHERE m.tenant_id = '$ta' AND m.provider_message_id = 'p1'"),
   'Hallo! api +4915112345678', '... stored in an api conversation');
$e = emit(payload => { messages => [ msg(id => 'p1', text => 'Hallo!') ] });
is(psql("SELECT count(*) FROM messages WHERE tenant_id = '$ta'"
        . " AND provider_message_id = 'p1'"), 1, 'the same id again: once');

$e = emit(payload => { messages => [ msg(
    type => 'image', text => undef,
    media => { url => 'https://example.com/a.png', mimeType => 'image/png',
               caption => 'look' }) ] });
is($e->{status}, 200, 'an image');
is(psql("SELECT content->'media'->>'url' || ' ' || (content->>'caption')"
        . " FROM messages WHERE tenant_id = '$ta' AND type = 'image'"),
   'https://example.com/a.png look', '... in the inbox\'s media shape');

# --- signatures: the connection's own secret
my $before = psql("SELECT count(*) FROM messages WHERE tenant_id = '$ta'");
is(emit(payload => { messages => [ msg() ] }, secret => 'not-it')->{status},
   403, 'signed with another secret: 403');
is(emit(payload => { messages => [ msg() ] }, signature => undef)->{status},
   403, 'not signed: 403');
my $other = api($t, 'POST', '/api/v1/channels', token => $tok,
                body => { channel => 'api', name => 'Other' })->{json};
is(emit(payload => { messages => [ msg() ] }, secret => $other->{secret})
   ->{status}, 403, 'signed with another connection\'s secret: 403');
is(emit(url => "http://127.0.0.1:$port/api/v1/channels/api/nope/webhook",
        payload => { messages => [ msg() ] })->{status}, 404,
   'an account nobody connected: 404');
is(emit(url => "http://127.0.0.1:$port/api/v1/channels/whatsapp/$account"
               . '/webhook', payload => {})->{status}, 404,
   'an account in the path of a channel that has none: 404');
for my $bad ([ { messages => {} }, 'messages not an array' ],
             [ { messages => [ msg(id => '') ] }, 'an empty id' ],
             [ { messages => [ msg(from => undef) ] }, 'no sender' ],
             [ { messages => [ msg(type => 'fax') ] }, 'an unknown type' ],
             [ { messages => [ msg(timestamp => 'now') ] }, 'a bad timestamp' ],
             [ { messages => [ msg(), msg(text => 42) ] },
               'a good and a bad message' ],
             [ { statuses => [ { id => 'x', status => 'lost',
                                 timestamp => 1 } ] }, 'an unknown status' ])
{
    is(emit(payload => $bad->[0])->{status}, 400, "$bad->[1]: 400");
}
is(psql("SELECT count(*) FROM messages WHERE tenant_id = '$ta'"), $before,
   'nothing of them stored');

$t->stop;
$peer->stop;
no_bad_log($t);

done_testing;
