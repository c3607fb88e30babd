# Twilio SMS (src/channels/orbit_twilio.c), the conversations' channel
# "sms", end to end against t/node/fake-twilio.js: a customer's SMS comes
# in as Twilio posts it (a form, X-Twilio-Signature over the URL it
# requested, under the connection's auth token) and is answered with
# TwiML; an agent's reply reaches the fake as exactly the form Twilio
# takes; the signed status callbacks move it to delivered, or to failed
# with Twilio's error code.  Then the same server behind a TLS terminator
# (orbit_public_url https://...): the URL signed is the public one, and
# the replies carry a StatusCallback the fake calls back.  An MMS's first
# media is fetched and kept (orbit_media local): Twilio's media URL, under
# the account's Basic auth, answers 307 to a short-lived S3 URL, fetched
# without it.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use MIME::Base64 qw(encode_base64);
use HTTP::Tiny;
use Orbit::Test;
use Orbit::Fake;
use Orbit::FakeTwilio;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $W = Orbit::Nginx::valgrind_enabled() ? 30 : 8;

# --- the documented vector, in Perl too (the C one is t/unit/test_form.c)
is(twilio_signature('12345', 'https://mycompany.com/myapp.php?foo=1&bar=2',
                    [ [ CallSid => 'CA1234567890ABCDE' ],
                      [ Caller => '+12349013030' ], [ Digits => '1234' ],
                      [ From => '+12349013030' ], [ To => '+18005551212' ] ]),
   '0/KCTR6DLpKmkAf8muzZqo1nDgQ=', 'the documented signature vector');

my $tw = Orbit::FakeTwilio->start;
my $PUBLIC = 'https://crm.example.test';
my $servroot = File::Spec->rel2abs($ENV{TEST_NGINX_SERVROOT}
                                   // 't/servroot');

sub server {
    my ($public) = @_;
    my $http = "orbit_channel_api twilio @{[ $tw->url ]};\n"
             . "orbit_jobs_backoff 200ms max=1s;\n"
             . "orbit_jobs_poll 1s;\n"
             . "orbit_media local $servroot/media;\n"
             . "orbit_media_fetch_allow 127.0.0.1;\n"
             . ($public ? "orbit_public_url $public;\n" : '');
    my $t = orbit_nginx(workers => 2, http_extra => $http);
    $t->start;
    return $t;
}

my $t = server();

my $ta = make_tenant('sms');
my $admin = make_user($ta, 'ADMIN');
my $tok = user_token($admin, $ta, 'ADMIN');
my $number = '+1415' . substr(uniq(''), -7);
my $sid = twilio_sid('AC');
my $token = uniq('token');
$tw->accounts($sid => $token);

my $r = api($t, 'POST', '/api/v1/channels', token => $tok,
            body => { channel => 'sms', name => 'Texts', accountId => $number,
                      credentials => { accountSid => $sid,
                                       authToken => $token } });
is($r->{status}, 201, 'a Twilio number connected') or diag($r->{body});

(my $path_number = $number) =~ s/\+/%2B/;
my $hook = "http://127.0.0.1:$port/api/v1/channels/twilio/$path_number"
         . '/webhook';

sub sms {
    my (%o) = @_;
    my $url = delete $o{url} // $hook;
    my %e = (url => $url, token => delete $o{token} // $token);
    $e{sign_url} = delete $o{sign_url} if exists $o{sign_url};
    $e{signature} = delete $o{signature} if exists $o{signature};
    return $tw->emit_sms(%e, params => sms_params(
        AccountSid => $sid, To => $number, %o));
}
sub count {
    return psql("SELECT count(*) FROM messages WHERE tenant_id = '$ta'");
}
sub message_row {
    my ($id) = @_;
    my %m;
    @m{qw(status provider error)} = split /\|/,
        psql("SELECT status, coalesce(provider_message_id, ''),"
             . " coalesce(error::text, '') FROM messages WHERE id = '$id'");
    return \%m;
}

# --- a customer texts
my $cust = '+49151' . substr(uniq(''), -7);
my $in_sid = twilio_sid('SM');
$r = sms(From => $cust, Body => 'Where is my parcel?', MessageSid => $in_sid);
is($r->{status}, 200, 'a signed SMS: 200');
like($r->{headers}{'content-type'}, qr{^text/xml}, '... answered as text/xml');
like($r->{body}, qr{^<\?xml version="1\.0" encoding="UTF-8"\?><Response/>\z},
     '... with an empty TwiML <Response/>');

my $conv = psql("SELECT conversation_id FROM messages WHERE tenant_id = '$ta'"
                . " AND provider_message_id = '$in_sid'");
ok($conv, '... stored in a conversation');
is(psql("SELECT c.channel || ' ' || k.phone || ' ' || ci.external_id"
        . " FROM conversations c JOIN contacts k ON k.id = c.contact_id"
        . " JOIN contact_identities ci ON ci.contact_id = k.id"
        . " WHERE c.id = '$conv'"),
   "sms $cust $cust", '... of an sms contact: phone and external id From');

my $list = api($t, 'GET', '/api/v1/conversations?channel=sms', token => $tok);
is($list->{status}, 200, 'GET /conversations');
my ($c) = grep { $_->{id} eq $conv } @{ $list->{json}{data} // [] };
ok($c && $c->{contact}{phone} eq $cust && $c->{channel} eq 'sms',
   '... lists it, with the contact\'s phone') or diag(explain($list->{json}));
my $msgs = api($t, 'GET', "/api/v1/conversations/$conv/messages",
               token => $tok);
my ($in) = grep { ($_->{providerMessageId} // '') eq $in_sid }
           @{ $msgs->{json}{data} // [] };
ok($in && $in->{content}{text} eq 'Where is my parcel?'
   && $in->{type} eq 'text' && $in->{direction} eq 'inbound',
   'GET /conversations/:id/messages returns the text')
    or diag(explain($msgs->{json}));

# --- the same MessageSid again: once
is(sms(From => $cust, Body => 'Where is my parcel?', MessageSid => $in_sid)
   ->{status}, 200, 'the same MessageSid again: 200');
is(psql("SELECT count(*) FROM messages WHERE tenant_id = '$ta'"
        . " AND provider_message_id = '$in_sid'"), 1, '... stored once');

my $jpeg = "\xff\xd8\xff\xe0" . join("", map { chr($_ * 11 % 256) } 1 .. 4000);
my $pdf = "%PDF-1.4\n" . ('x' x 300) . "\n%%EOF\n";

# --- the fake serves media as Twilio does: the account's Basic auth, then a
# 307 to a short-lived URL that takes no Authorization header
my $http = HTTP::Tiny->new(timeout => 5, max_redirect => 0);
my $me0 = $tw->media(account => $sid, content => $pdf,
                     mime_type => 'application/pdf');
(my $me_auth = $me0->{url}) =~ s{^http://}{http://$sid:$token\@};
$r = $http->get($me_auth);
is($r->{status}, 307, 'the fake answers a media URL with Basic auth: 307');
like($r->{headers}{location}, qr{^\Q@{[ $tw->url ]}\E/s3/[0-9a-f]+\?},
     '... to a short-lived URL elsewhere');
is($http->get($r->{headers}{location})->{content}, $pdf,
   '... which serves the bytes without Basic auth');
is($http->get($r->{headers}{location},
              { headers => { Authorization => 'Basic eDp5' } })->{status},
   400, '... and refuses a request with an Authorization header');
is($http->get($me0->{url})->{status}, 401, 'the media URL without: 401');

# --- media: the first as content.media for media.fetch, the rest along
my $mms = twilio_sid('MM');
my $me1 = $tw->media(account => $sid, content => $jpeg, message => $mms,
                     mime_type => 'image/jpeg');
my $me2 = $tw->media(account => $sid, content => $pdf, message => $mms,
                     mime_type => 'application/pdf');
$r = sms(From => $cust, Body => 'the box', MessageSid => $mms, NumMedia => 2,
         MediaUrl0 => $me1->{url}, MediaContentType0 => 'image/jpeg',
         MediaUrl1 => $me2->{url}, MediaContentType1 => 'application/pdf');
is($r->{status}, 200, 'an MMS with two media');
is(psql("SELECT type || ' ' || (content->'media'->>'provider') || ' '"
        . " || (content->'media'->>'mimeType') || ' '"
        . " || (content->>'caption') || ' '"
        . " || (content->'attachments'->0->>'mimeType')"
        . " FROM messages WHERE provider_message_id = '$mms'"),
   'image twilio image/jpeg the box application/pdf',
   '... an image (provider twilio) with its caption; the other attached');
my $mms_id = psql("SELECT id FROM messages WHERE provider_message_id"
                  . " = '$mms'");

# media.fetch follows the 307 without the credentials
my $ours;
ok(wait_until($W, sub {
    $ours = psql("SELECT content->'media'->>'mediaId' FROM messages"
                 . " WHERE id = '$mms_id'");
    $ours }), 'the image is fetched: the message names our copy')
    or diag(psql("SELECT status || ' ' || coalesce(last_error, '') FROM jobs"
                 . " WHERE kind = 'media.fetch'"));
my @asked = @{ $tw->calls(path => "/2010-04-01/Accounts/$sid/Messages/$mms"
                                  . "/Media/$me1->{sid}") };
is(scalar @asked, 1, '... its MediaUrl asked once');
is($asked[0]{headers}{authorization},
   'Basic ' . encode_base64("$sid:$token", ''),
   '... with the account\'s Basic auth');
is($asked[0]{outcome}, 'redirect', '... which answered 307');
my ($s3) = grep { $_->{time} >= $asked[0]{time} }
           @{ $tw->calls(path => '/s3/') };
ok($s3, '... then the Location fetched');
is($s3 && $s3->{query}{'X-Amz-Signature'},
   ($asked[0]{response}{headers}{Location} =~ /X-Amz-Signature=(\w+)/)[0],
   '... the Location as given');
ok($s3 && !exists $s3->{headers}{authorization},
   '... without an Authorization header');
is($s3 && $s3->{outcome}, 'media', '... and it served the bytes');

$r = api($t, 'GET', "/api/v1/media/$ours", token => $tok);
is($r->{status}, 200, 'GET /api/v1/media/{id} of the copy');
ok($r->{body} eq $jpeg, '... the customer\'s bytes');
is($r->{headers}{'content-type'}, 'image/jpeg', '... with their type');
$msgs = api($t, 'GET', "/api/v1/conversations/$conv/messages",
            token => $tok);
my ($mm) = grep { $_->{id} eq $mms_id } @{ $msgs->{json}{data} // [] };
is($mm && $mm->{content}{media}{url}, "/api/v1/media/$ours",
   'the message lists our URL');
is($mm && $mm->{content}{media}{size}, length $jpeg, '... and the size');
is($mm && $mm->{content}{attachments}[0]{url}, $me2->{url},
   '... the attachment keeps Twilio\'s URL');
is(scalar @{ $tw->calls(path => "/2010-04-01/Accounts/$sid/Messages/$mms"
                                . "/Media/$me2->{sid}") }, 0,
   '... and was not fetched');

# a redirect without a usable Location, and one too many: failed for good
sub fetch_job {
    my ($psid) = @_;
    return psql("SELECT j.status || '|' || coalesce(j.last_error, '')"
                . " FROM jobs j JOIN messages m"
                . " ON m.id::text = j.payload->>'messageId'"
                . " WHERE j.kind = 'media.fetch'"
                . " AND m.provider_message_id = '$psid'");
}
for my $case (
    [ 'a relative Location',
      { status => 307, headers => { Location => '/s3/elsewhere' } },
      qr/absolute http\(s\) URL/ ],
    [ 'a Location that is no http(s) URL',
      { status => 302, headers => { Location => 'ftp://127.0.0.1/x' } },
      qr/absolute http\(s\) URL/ ],
    [ 'no Location', { status => 301 }, qr/Location/ ],
    [ 'three redirects',
      { status => 307, path => '/s3/', times => 2,
        headers => { Location => $tw->url . '/s3/again' } },
      qr/redirected more than 2 times/ ])
{
    my ($name, $force, $why) = @$case;
    my $msid = twilio_sid('MM');
    my $me = $tw->media(account => $sid, content => $jpeg, message => $msid);
    $tw->force({ path => "/2010-04-01/Accounts/$sid/Messages/$msid/",
                 %$force });
    is(sms(From => $cust, MessageSid => $msid, NumMedia => 1,
           MediaUrl0 => $me->{url}, MediaContentType0 => 'image/jpeg')
       ->{status}, 200, "an MMS whose download answers $name");
    my $job;
    ok(wait_until($W, sub { ($job = fetch_job($msid)) =~ /^failed/ }),
       '... its media.fetch fails for good') or diag($job);
    like($job, $why, '... saying why');
    is(psql("SELECT content->'media' ? 'mediaId' FROM messages"
            . " WHERE provider_message_id = '$msid'"), 'f',
       '... the message keeps Twilio\'s URL only');
}
is(scalar(grep { $_->{index} > $asked[0]{index}
                 && exists $_->{headers}{authorization} }
           @{ $tw->calls(path => '/s3/') }), 0,
   'no request of media.fetch to a redirect\'s target carried an'
   . ' Authorization');

# --- signatures and bad requests: nothing stored
my $before = count();
is(sms(From => $cust, token => 'not-the-token')->{status}, 403,
   'signed with another token: 403');
is(sms(From => $cust, signature => undef)->{status}, 403, 'not signed: 403');
is(sms(From => $cust, signature => 'AAAA')->{status}, 403,
   'a signature of garbage: 403');
is(sms(From => $cust, sign_url => $hook . '?x=1')->{status}, 403,
   'signed over another URL: 403');
(my $https = $hook) =~ s/^http:/https:/;
is(sms(From => $cust, sign_url => $https)->{status}, 403,
   'signed for https, but the request came over http (no orbit_public_url):'
   . ' 403');
is(sms(From => $cust, Body => 'tampered', sign_url => $hook)->{status}, 200,
   '... while over the URL as requested (scheme, Host, URI): 200');
(my $portless = $hook) =~ s/:$port//;
is(sms(From => $cust, sign_url => $portless)->{status}, 200,
   'signed without the port (as Twilio does in some set-ups): 200');
is(count(), $before + 2, 'only the two good ones stored');
$before = count();

is(api($t, 'POST', "/api/v1/channels/twilio/$path_number/webhook",
       raw => 'MessageSid=SM1&Body=%zz',
       headers => { 'Content-Type' => 'application/x-www-form-urlencoded',
                    'X-Twilio-Signature' => 'x' })->{status}, 400,
   'a malformed form (a bad %-escape): 400');
is(sms(From => $cust, MessageSid => undef, SmsSid => undef,
       SmsMessageSid => undef)->{status}, 400, 'no MessageSid: 400');
is(sms(From => undef)->{status}, 400, 'no From: 400');
is(sms(From => $cust, NumMedia => 'many')->{status}, 400,
   'NumMedia not a number: 400');
is(sms(From => $cust, NumMedia => 1)->{status}, 400,
   'a missing MediaUrl0: 400');
is(sms(From => $cust, NumMedia => 1, MediaUrl0 => 'file:///etc/passwd')
   ->{status}, 400, 'a MediaUrl that is not http(s): 400');
$r = sms(From => $cust, url => "http://127.0.0.1:$port/api/v1/channels"
                              . '/twilio/%2B15550000000/webhook');
is($r->{status}, 404, 'a number nobody connected: 404');
is(count(), $before, 'nothing of them stored');

# --- an agent answers: exactly Twilio's form, no StatusCallback here
sub send_msg {
    my (%b) = @_;
    my $r = api($t, 'POST', '/api/v1/messages', token => $tok,
                body => { conversationId => $conv, %b });
    die "send: $r->{status} $r->{body}" unless $r->{status} == 201;
    return $r->{json};
}
sub sends {
    return $tw->calls(path => "/2010-04-01/Accounts/$sid/Messages.json");
}
sub wait_sends {
    my ($n) = @_;
    my $calls;
    wait_until($W, sub { $calls = sends(); @$calls >= $n });
    return $calls;
}

my $m = send_msg(content => 'It ships today & more +1 = fine?');
my $calls = wait_sends(1);
is(scalar @$calls, 1, 'the fake Twilio API receives the reply');
my $call = $calls->[0];
is($call->{method}, 'POST', '... a POST to Messages.json');
is($call->{headers}{authorization},
   'Basic ' . encode_base64("$sid:$token", ''),
   '... with the account\'s Basic auth');
like($call->{headers}{'content-type'}, qr{^application/x-www-form-urlencoded},
     '... a form');
is_deeply($call->{form}, { To => $cust, From => $number,
                           Body => 'It ships today & more +1 = fine?' },
          '... exactly To, From, Body (no StatusCallback without a public'
          . ' URL)') or diag(explain($call));
ok(wait_until($W, sub { message_row($m->{id})->{status} eq 'sent' }),
   'the message is sent');
is(message_row($m->{id})->{provider}, $call->{sid},
   '... with the SM sid as the provider\'s id');

# its statuses, signed, to the webhook
for my $st (qw(queued sent delivered)) {
    $r = sms(MessageSid => $call->{sid}, MessageStatus => $st,
             SmsStatus => $st, From => $number, To => $cust, Body => undef,
             NumMedia => undef);
    is($r->{status}, 200, "status callback $st: 200");
    like($r->{body}, qr{<Response/>}, '... TwiML');
}
is(message_row($m->{id})->{status}, 'delivered',
   'the callbacks moved it to delivered');

# undelivered: failed with the code
my $m2 = send_msg(content => 'Are you there?');
$calls = wait_sends(2);
ok(wait_until($W, sub { message_row($m2->{id})->{status} eq 'sent' }),
   'another reply sent');
$r = sms(MessageSid => $calls->[1]{sid}, MessageStatus => 'undelivered',
         SmsStatus => 'undelivered', ErrorCode => 30003, From => $number,
         To => $cust, Body => undef, NumMedia => undef);
is($r->{status}, 200, 'an undelivered callback: 200');
my $row = message_row($m2->{id});
is($row->{status}, 'failed', '... the message failed');
like($row->{error}, qr/"code": 30003/, '... with Twilio\'s ErrorCode');
like($row->{error}, qr/Unreachable destination handset/, '... and its title');

# --- 5xx retried (Retry-After honoured), 4xx failed with the reason
my $n = @{ sends() };
$tw->force({ status => 503, path => "/2010-04-01/Accounts/$sid/",
             body => { code => 20500, message => 'Internal Server Error',
                       more_info => 'https://www.twilio.com/docs/errors/20500',
                       status => 503 }, times => 1 },
           { error => 20429, path => "/2010-04-01/Accounts/$sid/",
             headers => { 'Retry-After' => '1' } });
my $m3 = send_msg(content => 'third time lucky');
ok(wait_until($W * 2, sub { message_row($m3->{id})->{status} eq 'sent' }),
   '503 then 429: retried until sent') or diag(explain(message_row($m3->{id})));
$calls = sends();
is(scalar @$calls - $n, 3, '... in three calls');
is_deeply([ map { $_->{response}{status} } @$calls[$n .. $#$calls] ],
          [ 503, 429, 201 ], '... 503, 429, 201');
ok($calls->[-1]{time} - $calls->[-2]{time} >= 0.9,
   '... the retry after the 429 waited its Retry-After');

$tw->force({ error => 21610, path => "/2010-04-01/Accounts/$sid/" });
my $m4 = send_msg(content => 'hello?');
ok(wait_until($W, sub { message_row($m4->{id})->{status} eq 'failed' }),
   'a 400 (21610): failed for good');
like(message_row($m4->{id})->{error}, qr/"code": 21610/, '... with its code');
like(message_row($m4->{id})->{error}, qr/unsubscribed recipient/,
     '... and Twilio\'s message');

# --- what SMS cannot carry: refused before Twilio
$n = @{ sends() };
my $m5 = send_msg(content => 'x' x 1601);
ok(wait_until($W, sub { message_row($m5->{id})->{status} eq 'failed' }),
   'a text over 1600 characters: failed');
like(message_row($m5->{id})->{error}, qr/1600/, '... saying why');
$r = api($t, 'POST', '/api/v1/messages', token => $tok,
         raw => qq({"conversationId":"$conv","content":")
                . ('\u00e9' x 1600) . '"}');
is($r->{status}, 201, '1600 characters of two bytes each: taken');
my $m6 = $r->{json};
ok(wait_until($W, sub { message_row($m6->{id})->{status} eq 'sent' }),
   '1600 characters of two bytes each: sent');
is(scalar @{ sends() } - $n, 1, '... only that one reached Twilio');

# a contact without a phone
my $k2 = psql("WITH c AS (INSERT INTO contacts (tenant_id, name)"
              . " VALUES ('$ta', 'No Phone') RETURNING id, tenant_id),"
              . " k AS (INSERT INTO tenant_counters AS t (tenant_id,"
              . " contacts) SELECT tenant_id, 1 FROM c ON CONFLICT"
              . " (tenant_id, shard) DO UPDATE SET contacts = t.contacts + 1)"
              . " SELECT id FROM c");
my $conn = psql("SELECT id FROM channel_connections WHERE account_id"
                . " = '$number'");
my $conv2 = psql("INSERT INTO conversations (tenant_id, contact_id, channel,"
                 . " connection_id) VALUES ('$ta', '$k2', 'sms', '$conn')"
                 . " RETURNING id");
$r = api($t, 'POST', '/api/v1/messages', token => $tok,
         body => { conversationId => $conv2, content => 'hi' });
is($r->{status}, 201, 'a reply to a contact without a phone is taken');
ok(wait_until($W, sub { message_row($r->{json}{id})->{status} eq 'failed' }),
   '... and fails');
like(message_row($r->{json}{id})->{error}, qr/no E\.164 phone/,
     '... saying why');

# --- an API key instead of the auth token (which still verifies)
my ($key, $key_secret) = (twilio_sid('SK'), uniq('secret'));
$tw->api_key($key, $key_secret, $sid);
my $conn_id = psql("SELECT id FROM channel_connections"
                   . " WHERE account_id = '$number'");
$r = api($t, 'PATCH', "/api/v1/channels/$conn_id", token => $tok,
         body => { credentials => { accountSid => $sid, authToken => $token,
                                    apiKeySid => $key,
                                    apiKeySecret => $key_secret } });
is($r->{status}, 200, 'the connection gets an API key') or diag($r->{body});
my $mk = send_msg(content => 'with a key');
ok(wait_until($W, sub { message_row($mk->{id})->{status} eq 'sent' }),
   '... a reply is sent');
($call) = grep { ($_->{form}{Body} // '') eq 'with a key' } @{ sends() };
is($call->{headers}{authorization},
   'Basic ' . encode_base64("$key:$key_secret", ''),
   '... with the API key\'s Basic auth');

# --- a Messaging Service as the account: MessagingServiceSid, not From
my $mg = twilio_sid('MG');
$r = api($t, 'POST', '/api/v1/channels', token => $tok,
         body => { channel => 'sms', name => 'Service', accountId => $mg,
                   credentials => { accountSid => $sid,
                                    authToken => $token } });
is($r->{status}, 201, 'a Messaging Service connected');
my $mg_sid = twilio_sid('SM');
my $cust2 = '+44770' . substr(uniq(''), -7);
is(sms(url => "http://127.0.0.1:$port/api/v1/channels/twilio/$mg/webhook",
       From => $cust2, MessagingServiceSid => $mg, MessageSid => $mg_sid,
       Body => 'via the service')->{status}, 200,
   '... its webhook takes an SMS');
my $conv_mg = psql("SELECT conversation_id FROM messages"
                   . " WHERE provider_message_id = '$mg_sid'");
$r = api($t, 'POST', '/api/v1/messages', token => $tok,
         body => { conversationId => $conv_mg, content => 'service reply' });
ok(wait_until($W, sub {
       grep { ($_->{form}{Body} // '') eq 'service reply' } @{ sends() } }),
   '... and a reply goes out');
($call) = grep { ($_->{form}{Body} // '') eq 'service reply' } @{ sends() };
is_deeply($call->{form}, { To => $cust2, MessagingServiceSid => $mg,
                           Body => 'service reply' },
          '... from the service: MessagingServiceSid, no From');

$t->stop;
no_bad_log($t);

# --- behind a TLS terminator: orbit_public_url https://...
$t = server($PUBLIC);
my $public_hook = "$PUBLIC/api/v1/channels/twilio/$path_number/webhook";
$before = count();
$r = sms(From => $cust, Body => 'via the proxy', sign_url => $public_hook);
is($r->{status}, 200, 'signed over the public https URL: 200');
is(sms(From => $cust, Body => 'not via')->{status}, 403,
   'signed over the URL nginx saw (http, its Host): 403');
is(count(), $before + 1, '... only the first stored');

$tw->auto_status(statuses => [qw(queued sent delivered)], delay => 20,
                 via => "http://127.0.0.1:$port");
my $m7 = send_msg(content => 'Tracked');
ok(wait_until($W, sub {
       grep { ($_->{form}{Body} // '') eq 'Tracked' } @{ sends() } }),
   'a reply sent behind the proxy');
($call) = grep { ($_->{form}{Body} // '') eq 'Tracked' } @{ sends() };
is($call->{form}{StatusCallback},
   "$PUBLIC/api/v1/channels/twilio/$path_number/webhook"
   . "?messageId=$m7->{id}",
   '... its StatusCallback our public webhook, with our id');
ok(wait_until($W, sub { message_row($m7->{id})->{status} eq 'delivered' }),
   'Twilio\'s signed callbacks (queued, sent, delivered) move it to'
   . ' delivered') or diag(explain(message_row($m7->{id})));
my @cb = grep { $_->{kind} eq 'auto-status' } @{ $tw->outbox };
ok(@cb >= 3 && !grep({ $_->{status} != 200 } @cb),
   '... each answered 200') or diag(explain(\@cb));

$tw->auto_status(statuses => [qw(sent undelivered)], error_code => 30007,
                 via => "http://127.0.0.1:$port");
my $m8 = send_msg(content => 'Filtered?');
ok(wait_until($W, sub { message_row($m8->{id})->{status} eq 'failed' }),
   'an undelivered callback: failed');
like(message_row($m8->{id})->{error}, qr/"code": 30007/, '... code 30007');

$t->stop;
$tw->stop;
no_bad_log($t);

done_testing;
