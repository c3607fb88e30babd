# The jobs an inbound message brings (016_inbound_under_load.sql,
# src/channels/orbit_pipeline.c): orbit_inbound() enqueues a flow trigger
# for every new message and a media copy for media the provider keeps,
# names them in its results, and inserts them without NOTIFY (whose
# commit-time lock would serialize the pipeline's commits); the worker
# that committed them claims them.  The poll here is a minute long: a
# media copy done in seconds was woken by the pipeline.  Jobs inserted
# elsewhere still NOTIFY.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use File::Spec;
use IO::Handle;
use Orbit::Test;
use Orbit::Fake;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $W = Orbit::Nginx::valgrind_enabled() ? 30 : 8;

my $servroot = File::Spec->rel2abs($ENV{TEST_NGINX_SERVROOT}
                                   // 't/servroot');
my $wa = Orbit::Fake->start('whatsapp');

my $t = orbit_nginx(workers => 1, http_extra => <<"_EOC_");
orbit_channel_api whatsapp @{[ $wa->url ]}/v21.0;
orbit_media local $servroot/media;
orbit_media_fetch_allow 127.0.0.1;    # the fake
orbit_jobs_poll 60s;
_EOC_
$t->start;

my $ta = make_tenant('inbound-jobs');
my $tok = user_token(make_user($ta, 'ADMIN'), $ta, 'ADMIN');

my $pn = uniq('8');
my $token = 'EAAG' . uniq('tok');
my $r = api($t, 'POST', '/api/v1/channels', token => $tok,
            body => { channel => 'whatsapp', name => 'Support',
                      accountId => $pn,
                      credentials => { accessToken => $token } });
is($r->{status}, 201, 'a WhatsApp number connected') or diag($r->{body});
$wa->tokens($pn => $token);
my $hook = "http://127.0.0.1:$port/api/v1/whatsapp/webhook";
my $app_secret = secret('META_APP_SECRET');
my $cust = '1555' . substr(uniq(''), -7);

# the notifications of orbit_jobs while the webhooks come, by a psql that
# LISTENs; listen_heard() ends it and returns the kinds it heard
my $heard = "$servroot/notifications.txt";
sub listen_start {
    local $ENV{PGAPPNAME} = 't075-listener';
    open my $fh, '|-', "psql -X -q -h 127.0.0.1 -p $ENV{TEST_NGINX_PG_PORT}"
                       . " -U postgres -d orbit > $heard 2>&1"
        or die "psql: $!";
    $fh->autoflush(1);
    print $fh "LISTEN orbit_jobs;\n";
    wait_until(10, sub {
        psql("SELECT count(*) FROM pg_stat_activity"
             . " WHERE application_name = 't075-listener'"
             . " AND state = 'idle' AND query ILIKE 'LISTEN%'") }) or die;
    return $fh;
}
sub listen_heard {
    my ($fh, $want) = @_;
    my @kinds;
    my $read = sub {
        print $fh "SELECT 1;\n";
        open my $in, '<', $heard or die "$heard: $!";
        @kinds = map { /payload "([^"]+)"/ ? $1 : () } <$in>;
        close $in;
        return !defined $want || grep { $_ eq $want } @kinds;
    };
    wait_until($W, $read);
    close $fh;
    open my $in, '<', $heard or die "$heard: $!";
    @kinds = map { /payload "([^"]+)"/ ? $1 : () } <$in>;
    close $in;
    return @kinds;
}
my $listener = listen_start();

# --- a text: its flow trigger, enqueued and named, without NOTIFY
$r = $wa->emit(url => $hook, app_secret => $app_secret,
               payload => wa_text(phone_number_id => $pn, wa_id => $cust,
                                  name => 'Dora', body => 'Hi'));
is($r->{status}, 200, 'a customer writes');
my $conv = psql("SELECT id FROM conversations WHERE tenant_id = '$ta'");
is(psql("SELECT count(*) FROM jobs WHERE tenant_id = '$ta'"
        . " AND kind = 'flow.trigger'"
        . " AND payload->>'conversationId' = '$conv'"), 1,
   'a flow trigger enqueued with the message');

# --- a photo: its copy claimed by the worker that stored it
my $media_id = '7' . substr(uniq(''), -12);
$wa->media(id => $media_id, mime_type => 'image/jpeg',
           content => "\xff\xd8\xff\xe0" . ('x' x 2000));
my $wamid = wa_wamid($cust);
my $t0 = time;
$r = $wa->emit(url => $hook, app_secret => $app_secret,
               payload => wa_media(phone_number_id => $pn, wa_id => $cust,
                                   id => $media_id, wamid => $wamid));
is($r->{status}, 200, 'a photo comes in');
my $mid = psql("SELECT id FROM messages WHERE provider_message_id = '$wamid'");
ok(wait_until($W, sub {
    psql("SELECT content->'media'->>'mediaId' FROM messages"
         . " WHERE id = '$mid'") }),
   'its media is copied, long before the minute\'s poll')
    or diag(psql("SELECT kind, status, last_error FROM jobs"
                 . " WHERE tenant_id = '$ta'"));
ok(time - $t0 < $W, '... in ' . sprintf('%.1f', time - $t0) . ' s');

# --- a job enqueued elsewhere (an agent's reply) still notifies
$r = api($t, 'POST', '/api/v1/messages', token => $tok,
         body => { conversationId => $conv, type => 'text',
                   content => { text => 'Hello Dora' } });
is($r->{status}, 201, 'an agent answers') or diag($r->{body});

ok(wait_until($W, sub {
    psql("SELECT count(*) FROM jobs WHERE kind = 'message.send'"
         . " AND payload->>'conversationId' = '$conv'") }),
   '... its message.send enqueued');
my @kinds = listen_heard($listener, 'message.send');
ok(scalar(grep { $_ eq 'message.send' } @kinds),
   'the reply\'s message.send was notified');
is(scalar(grep { $_ eq 'flow.trigger' || $_ eq 'media.fetch' } @kinds), 0,
   'the pipeline\'s jobs were not') or diag("@kinds");

# --- what orbit_inbound() says of them
my $items = json_of([
    { kind => 'message', channel => 'whatsapp', account => $pn,
      contact => { externalId => $cust }, providerMessageId => uniq('w.'),
      type => 'text', content => { text => 'again' } },
    { kind => 'message', channel => 'whatsapp', account => $pn,
      contact => { externalId => $cust }, providerMessageId => uniq('w.'),
      type => 'image', content => { media => { provider => 'whatsapp',
                                               id => '1' } } },
    { kind => 'status', channel => 'whatsapp', account => $pn,
      providerMessageId => 'nobody', status => 'read' },
]);
$items =~ s/'/''/g;
is(psql("BEGIN; SELECT string_agg(coalesce(r->>'jobs', '-'), ' ')"
        . " FROM jsonb_array_elements(orbit_inbound('$items')) r;"
        . " ROLLBACK"),
   '["flow.trigger"] ["flow.trigger", "media.fetch"] -',
   'orbit_inbound() names each message\'s jobs, a status none');

$t->stop;
no_bad_log($t);

# --- a worker that runs no jobs tells the others, by a NOTIFY of its own
$t = orbit_nginx(workers => 1, http_extra => <<"_EOC_");
orbit_channel_api whatsapp @{[ $wa->url ]}/v21.0;
orbit_jobs off;
_EOC_
$t->start;
$listener = listen_start();
$r = $wa->emit(url => $hook, app_secret => $app_secret,
               payload => wa_text(phone_number_id => $pn, wa_id => $cust,
                                  name => 'Dora', body => 'Anyone?'));
is($r->{status}, 200, 'a message to a worker with orbit_jobs off');
@kinds = listen_heard($listener, 'flow.trigger');
is(scalar(grep { $_ eq 'flow.trigger' } @kinds), 1,
   '... its flow trigger notified to the others, once') or diag("@kinds");

$t->stop;
no_bad_log($t);
done_testing;
