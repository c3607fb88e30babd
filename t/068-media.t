# Media (009_media.sql, src/api/orbit_api_media.c, src/io/orbit_storage.c,
# src/channels/orbit_media_fetch.c) on local disk: an agent uploads a file
# and sends it (WhatsApp fetches it by a signed link that expires), and
# the media a customer sends is fetched from the provider and kept.  Bad
# uploads, other tenants, forged and expired links.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use Digest::SHA qw(sha256_hex hmac_sha256_hex);
use Orbit::Test;
use Orbit::Node;
use Orbit::Fake;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $W = Orbit::Nginx::valgrind_enabled() ? 30 : 8;

my $wa = Orbit::Fake->start('whatsapp');
my $servroot = $ENV{TEST_NGINX_SERVROOT} // 't/servroot';
$servroot = File::Spec->rel2abs($servroot);
my $store = "$servroot/media";

my $HTTP = <<"_EOC_";
orbit_channel_api whatsapp @{[ $wa->url ]}/v21.0;
orbit_public_url http://127.0.0.1:$port/;
orbit_media local $store;
orbit_media_fetch_allow 127.0.0.1;    # the fakes
orbit_media_max_size 1m;
orbit_jobs_backoff 200ms max=1s;
orbit_jobs_poll 1s;
_EOC_

my $t = orbit_nginx(workers => 2, http_extra => $HTTP,
                    config => "location /api/v1/media { orbit_api;"
                              . " client_max_body_size 4m; }\n"
                              . "location /socket.io/ { orbit_socketio; }\n");
$t->start;

my $ta = make_tenant('media');
my $admin = make_user($ta, 'ADMIN');
my $tok = user_token($admin, $ta, 'ADMIN');
my $tb = make_tenant('media-other');
my $tok_b = user_token(make_user($tb, 'ADMIN'), $tb, 'ADMIN');

sub upload {
    my ($bytes, %o) = @_;
    return api($t, 'POST', '/api/v1/media'
                   . (defined $o{filename} ? "?filename=$o{filename}" : ''),
               token => $o{token} // $tok, raw => $bytes,
               headers => { 'Content-Type' => $o{type} // 'image/png' });
}

# --- an upload, and its bytes back
my $png = "\x89PNG\r\n\x1a\n" . join('', map { chr(($_ * 7) % 256) } 1 .. 3000);
my $r = upload($png, filename => 'parcel.png');
is($r->{status}, 201, 'an upload: 201') or diag($r->{body});
my $up = $r->{json};
is($up->{mimeType}, 'image/png', '... its type');
is($up->{size}, length $png, '... its size');
is($up->{sha256}, sha256_hex($png), '... its SHA-256');
is($up->{filename}, 'parcel.png', '... its name');
is($up->{source}, 'upload', '... an upload');
is($up->{url}, "/api/v1/media/$up->{id}", '... where it is read');
ok(-f "$store/$ta/$up->{id}", '... a file under the storage folder');
ok(!glob("$store/$ta/*.tmp"), '... no temporary file left');

$r = api($t, 'GET', "/api/v1/media/$up->{id}", token => $tok);
is($r->{status}, 200, 'read back by the tenant');
ok($r->{body} eq $png, '... the same bytes');
is($r->{headers}{'content-type'}, 'image/png', '... with its type');
is($r->{headers}{'content-disposition'}, 'inline; filename="parcel.png"',
   '... and its name');
is($r->{headers}{'x-content-type-options'}, 'nosniff', '... never sniffed');

is($r->{headers}{'content-security-policy'}, "sandbox; default-src 'none'",
   '... sandboxed');
ok($r->{headers}{etag} && $r->{headers}{'last-modified'},
   '... with an ETag and Last-Modified');
$r = api($t, 'GET', "/api/v1/media/$up->{id}", token => $tok,
         headers => { Range => 'bytes=0-9' });
is($r->{status}, 206, 'a range: 206');
ok($r->{body} eq substr($png, 0, 10), '... those bytes');

my $html = upload('<script>alert(1)</script>', type => 'text/html',
                  filename => 'x.html')->{json};
$r = api($t, 'GET', "/api/v1/media/$html->{id}", token => $tok);
is($r->{headers}{'content-disposition'}, 'attachment; filename="x.html"',
   'HTML is never shown inline: an attachment');
is($r->{headers}{'content-security-policy'}, "sandbox; default-src 'none'",
   '... and sandboxed');
$r = upload('a', type => "text/plain;   charset=utf-8");
is($r->{json}{mimeType}, 'text/plain; charset=utf-8',
   'a type\'s runs of spaces made one (as S3 signs it)');

$r = api($t, 'GET', "/api/v1/media/$up->{id}", token => $tok_b);
is($r->{status}, 404, 'another tenant: 404');
$r = api($t, 'GET', "/api/v1/media/$up->{id}");
is($r->{status}, 401, 'no token: 401');
$r = api($t, 'GET', '/api/v1/media/not-a-uuid', token => $tok);
is($r->{status}, 400, 'not an id: 400');

# --- bad uploads
$r = upload('', type => 'text/plain');
is($r->{status}, 400, 'an empty body: 400');
$r = upload("--x\r\n", type => 'multipart/form-data; boundary=x');
is($r->{status}, 415, 'a form: 415, send the bytes');
like($r->{json}{message}, qr/not a form/, '... saying so');
$r = upload('abc', type => 'image');
is($r->{status}, 400, 'a Content-Type that is no media type: 400');
$r = upload('abc', type => 'text/plain', filename => 'a%2Fb.txt');
is($r->{status}, 400, 'a filename with a slash: 400');
$r = upload('x' x (1024 * 1024 + 1), type => 'application/octet-stream');
is($r->{status}, 413, 'over orbit_media_max_size: 413');
$r = upload('x' x (5 * 1024 * 1024), type => 'application/octet-stream');
is($r->{status}, 413, 'over client_max_body_size: 413, from nginx');
is(api($t, 'POST', '/api/v1/media', raw => 'abc',
       headers => { 'Content-Type' => 'text/plain' })->{status}, 401,
   'an upload without a token: 401');
is(psql("SELECT count(*) FROM media WHERE tenant_id = '$ta'"), 3,
   'nothing stored of the refused ones');

# --- a WhatsApp conversation, to send and receive media
my $pn = uniq('8');
my $token = 'EAAG' . uniq('tok');
$r = api($t, 'POST', '/api/v1/channels', token => $tok,
         body => { channel => 'whatsapp', name => 'Support', accountId => $pn,
                   credentials => { accessToken => $token } });
is($r->{status}, 201, 'a WhatsApp number connected') or diag($r->{body});
$wa->tokens($pn => $token);
my $hook = "http://127.0.0.1:$port/api/v1/whatsapp/webhook";
my $app_secret = secret('META_APP_SECRET');

my $cust = '1555' . substr(uniq(''), -7);
$r = $wa->emit(url => $hook, app_secret => $app_secret,
               payload => wa_text(phone_number_id => $pn, wa_id => $cust,
                                  name => 'Dora', body => 'Hi'));
is($r->{status}, 200, 'a customer writes');
my $conv = psql("SELECT id FROM conversations WHERE tenant_id = '$ta'");

# --- the upload sent: WhatsApp gets a link it can fetch, for a day
$r = api($t, 'POST', '/api/v1/messages', token => $tok,
         body => { conversationId => $conv, type => 'image',
                   content => { media => { mediaId => $up->{id} },
                                caption => 'your parcel' } });
is($r->{status}, 201, 'an image sent by its upload\'s id') or diag($r->{body});
my $sent = $r->{json};
is($sent->{content}{media}{url}, "/api/v1/media/$up->{id}",
   '... stored with our URL');
is($sent->{content}{media}{mimeType}, 'image/png', '... and its type');
is($sent->{content}{media}{filename}, 'parcel.png', '... and its name');

my $call;
ok(wait_until($W, sub {
    ($call) = grep { ($_->{json}{biz_opaque_callback_data} // '')
                     eq $sent->{id} } @{ $wa->calls(path => "/v21.0/$pn/") };
    $call }), 'the Graph API receives the send');
my $link = $call->{json}{image}{link} // '';
like($link, qr{^http://127\.0\.0\.1:$port/api/v1/media/$up->{id}/content\?expires=\d+&sig=[0-9a-f]{32}$},
     '... the image by a signed link on orbit_public_url');
my ($expires) = $link =~ /expires=(\d+)/;
ok($expires > time + 86000 && $expires < time + 86500, '... for a day');

(my $path = $link) =~ s{^http://127\.0\.0\.1:$port}{};
$r = $t->http('GET', $path);
is($r->{status}, 200, 'the link fetched without a token');
ok($r->{body} eq $png, '... the uploaded bytes');
(my $forged = $path) =~ s/sig=(.)/'sig=' . ($1 eq 'a' ? 'b' : 'a')/e;
is($t->http('GET', $forged)->{status}, 403, 'a forged signature: 403');
(my $longer = $path) =~ s/expires=(\d+)/'expires=' . ($1 + 1)/e;
is($t->http('GET', $longer)->{status}, 403, 'a longer expiry: 403');
my $key = pack 'H*', secret('ENCRYPTION_KEY');
is(substr(hmac_sha256_hex("media:$up->{id}:$expires", $key), 0, 32),
   ($link =~ /sig=([0-9a-f]+)/)[0],
   'the signature: HMAC-SHA256 of media:<id>:<expires> under the key');
my $past = int(time) - 10;
my $sig = substr(hmac_sha256_hex("media:$up->{id}:$past", $key), 0, 32);
is($t->http('GET', "/api/v1/media/$up->{id}/content?expires=$past&sig=$sig")
       ->{status}, 410, 'a link past its expiry: 410');
is($t->http('GET', "/api/v1/media/$up->{id}/content")->{status}, 403,
   'no signature: 403');

$r = api($t, 'POST', '/api/v1/messages', token => $tok_b,
         body => { conversationId => $conv, type => 'image',
                   content => { media => { mediaId => $up->{id} } } });
is($r->{status}, 404, 'another tenant cannot send into the conversation');
my $conv_b = make_conversation($tb);
$r = api($t, 'POST', '/api/v1/messages', token => $tok_b,
         body => { conversationId => $conv_b, type => 'image',
                   content => { media => { mediaId => $up->{id} } } });
is($r->{status}, 400, 'another tenant\'s upload cannot be sent: 400');
like($r->{json}{message}, qr/not a media of this tenant/, '... saying so');
$r = api($t, 'POST', '/api/v1/messages', token => $tok,
         body => { conversationId => $conv, type => 'image',
                   content => { media => { mediaId => $up->{id},
                                           url => 'https://x.example/a' } } });
is($r->{status}, 400, 'a url and a mediaId: 400');
$r = api($t, 'POST', '/api/v1/messages', token => $tok,
         body => { conversationId => $conv, type => 'image',
                   content => { media => { mediaId => 'nope' } } });
is($r->{status}, 400, 'a mediaId that is no UUID: 400');

# --- inbound media: fetched from Graph and kept
my $sock = node_start('sio-client.js', args => [ "http://127.0.0.1:$port/chat" ],
                      env => { TOKEN => $tok });
ok($sock->wait_for(sub { $_[0]{event} eq 'connect' }, 2 * $W),
   'the admin\'s socket connects');

my $photo = "\xff\xd8\xff\xe0" . join('', map { chr(($_ * 13) % 256) } 1 .. 5000);
my $media_id = '7' . substr(uniq(''), -12);
$wa->media(id => $media_id, mime_type => 'image/jpeg', content => $photo);
my $wamid = wa_wamid();
$r = $wa->emit(url => $hook, app_secret => $app_secret,
               payload => wa_media(phone_number_id => $pn, wa_id => $cust,
                                   id => $media_id, wamid => $wamid,
                                   caption => 'broken box'));
is($r->{status}, 200, 'a photo comes in');
my $mid = psql("SELECT id FROM messages WHERE provider_message_id = '$wamid'");

my $ours;
ok(wait_until($W, sub {
    $ours = psql("SELECT content->'media'->>'mediaId' FROM messages"
                 . " WHERE id = '$mid'");
    $ours }), 'its media is fetched: the message names our copy')
    or diag(psql("SELECT kind, status, last_error FROM jobs"
                 . " WHERE kind = 'media.fetch'"));
my $gets = $wa->calls(path => "/v21.0/$media_id");
is(scalar @$gets, 1, '... Graph asked once for the media\'s URL');
is($gets->[0]{headers}{authorization}, "Bearer $token",
   '... with the connection\'s token');
ok(scalar(grep { $_->{outcome} eq 'download' } @{ $wa->calls }),
   '... then the bytes downloaded');

$r = api($t, 'GET', "/api/v1/media/$ours", token => $tok);
is($r->{status}, 200, 'the copy is read like an upload');
ok($r->{body} eq $photo, '... the customer\'s bytes');
is($r->{headers}{'content-type'}, 'image/jpeg', '... with their type');

$r = api($t, 'GET', "/api/v1/conversations/$conv/messages", token => $tok);
my ($in) = grep { $_->{id} eq $mid } @{ $r->{json}{data} };
is($in->{content}{media}{url}, "/api/v1/media/$ours",
   'the message lists our URL');
is($in->{content}{media}{id}, $media_id, '... and keeps the provider\'s id');
is($in->{content}{media}{size}, length $photo, '... and the size');
is(psql("SELECT source || ' ' || sha256 FROM media WHERE id = '$ours'"),
   'inbound ' . sha256_hex($photo), 'a media row: inbound, hashed');
my $ev = $sock->wait_for(sub { $_[0]{event} eq 'message_updated'
                               && $_[0]{args}[0]{messageId} eq $mid }, $W);
ok($ev, 'message_updated reaches the inbox');
is($ev && $ev->{args}[0]{media}{mediaId}, $ours, '... naming the copy');

# --- a download that answers 500: retried (located again), then kept
my $again = "\x89PNG\r\n\x1a\n" . join("", map { chr($_ * 5 % 256) } 1 .. 999);
my $again_id = '7' . substr(uniq(''), -12);
$wa->media(id => $again_id, mime_type => 'image/png', content => $again);
$wa->force({ status => 500, body => 'Internal Server Error', times => 1,
             path => "/media-download/$again_id" });
my $wamid2 = wa_wamid();
$r = $wa->emit(url => $hook, app_secret => $app_secret,
               payload => wa_media(phone_number_id => $pn, wa_id => $cust,
                                   id => $again_id, wamid => $wamid2));
is($r->{status}, 200, 'a photo whose first download answers 500');
my $mid2 = psql("SELECT id FROM messages WHERE provider_message_id"
                . " = '$wamid2'");
my $ours2;
ok(wait_until(2 * $W, sub {
    $ours2 = psql("SELECT content->'media'->>'mediaId' FROM messages"
                  . " WHERE id = '$mid2'");
    $ours2 }), '... fetched on a later attempt')
    or diag(psql("SELECT status || ' ' || coalesce(last_error, '') FROM jobs"
                 . " j WHERE kind = 'media.fetch' AND payload->>'messageId'"
                 . " = '$mid2'"));
is_deeply([ map { $_->{response}{status} }
            @{ $wa->calls(path => "/media-download/$again_id") } ],
          [ 500, 200 ], '... the download answered 500, then 200');
is(scalar @{ $wa->calls(path => "/v21.0/$again_id") }, 2,
   '... its URL asked again for the second attempt');
is(psql("SELECT attempts || ' ' || status FROM jobs WHERE kind ="
        . " 'media.fetch' AND payload->>'messageId' = '$mid2'"), '2 done',
   '... in two attempts');
$r = api($t, 'GET', "/api/v1/media/$ours2", token => $tok);
ok($r->{status} == 200 && $r->{body} eq $again, '... the bytes kept');

# --- what the sender names is cleaned before it is kept and served
my $doc_id = '5' . substr(uniq(''), -12);
$wa->media(id => $doc_id, mime_type => 'application/octet-stream',
           content => 'quarterly numbers');
my $doc_wamid = wa_wamid();
$r = $wa->emit(url => $hook, app_secret => $app_secret,
               payload => wa_media(phone_number_id => $pn, wa_id => $cust,
                                   type => 'document', id => $doc_id,
                                   wamid => $doc_wamid,
                                   mime_type => "text/html\r\nX-Evil: 1",
                                   filename => "a\"b\r\nX-Evil: 1.pdf"));
is($r->{status}, 200, 'a document with a hostile name and type');
my $doc;
ok(wait_until($W, sub {
    $doc = psql("SELECT content->'media'->>'mediaId' FROM messages"
                . " WHERE provider_message_id = '$doc_wamid'");
    $doc }), '... is fetched all the same');
is(psql("SELECT mime_type || '|' || filename FROM media WHERE id = '$doc'"),
   'application/octet-stream|a_b__X-Evil: 1.pdf',
   '... its type refused, its name cleaned');
$r = api($t, 'GET', "/api/v1/media/$doc", token => $tok);
ok(!exists $r->{headers}{'x-evil'}, '... no header injected');
is($r->{headers}{'content-disposition'},
   'attachment; filename="a_b__X-Evil: 1.pdf"', '... an attachment');

# --- larger than orbit_media_max_size: failed for good, downloaded once
my $big_id = '4' . substr(uniq(''), -12);
$wa->media(id => $big_id, mime_type => 'video/mp4',
           content => 'v' x (1024 * 1024 + 10));
my $big_wamid = wa_wamid();
$r = $wa->emit(url => $hook, app_secret => $app_secret,
               payload => wa_media(phone_number_id => $pn, wa_id => $cust,
                                   type => 'video', id => $big_id,
                                   wamid => $big_wamid));
ok(wait_until($W, sub {
    psql("SELECT j.status || ' ' || j.attempts FROM jobs j JOIN messages m"
         . " ON m.id::text = j.payload->>'messageId'"
         . " WHERE j.kind = 'media.fetch'"
         . " AND m.provider_message_id = '$big_wamid'") eq 'failed 1' }),
   'a video over orbit_media_max_size: failed at once, not retried');

# --- media Graph does not know: failed for good, the message unchanged
my $gone = wa_wamid();
$r = $wa->emit(url => $hook, app_secret => $app_secret,
               payload => wa_media(phone_number_id => $pn, wa_id => $cust,
                                   id => '999000111', wamid => $gone));
is($r->{status}, 200, 'a photo whose media Graph has forgotten');
ok(wait_until($W, sub {
    psql("SELECT j.status FROM jobs j JOIN messages m"
         . " ON m.id::text = j.payload->>'messageId'"
         . " WHERE j.kind = 'media.fetch' AND m.provider_message_id = '$gone'")
        eq 'failed' }), '... its fetch fails for good (a 400)');
is(psql("SELECT content->'media' ? 'mediaId' FROM messages"
        . " WHERE provider_message_id = '$gone'"), 'f',
   '... the message keeps the provider\'s media id only');

$sock->stop;
$t->stop;
no_bad_log($t);

done_testing;
