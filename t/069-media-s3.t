# Media in an S3-compatible bucket (orbit_media s3): uploads PUT with
# Signature V4 (the fake S3 recomputes every signature, as S3 does),
# reads through presigned URLs, providers' links presigned too, inbound
# media fetched into the bucket; a wrong key pair: nothing stored, a clear
# error; a storage without its keys: nginx refuses the configuration.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use Digest::SHA qw(sha256_hex);
use File::Copy qw(copy);
use HTTP::Tiny;
use Orbit::Test;
use Orbit::Fake;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $W = Orbit::Nginx::valgrind_enabled() ? 30 : 8;

my $s3 = Orbit::Fake->start('s3');
my $wa = Orbit::Fake->start('whatsapp');
my ($AK, $SK) = ('AKIAORBITTEST' . int(rand 1e6), 'sk/' . uniq('secret'));
$s3->control(POST => 's3', { accessKeyId => $AK, secretAccessKey => $SK,
                             region => 'eu-test-1',
                             buckets => [ 'orbit-media' ] });

# the run's secrets, and the bucket's key pair
my $servroot = File::Spec->rel2abs($ENV{TEST_NGINX_SERVROOT} // 't/servroot');
my $secrets = "$servroot.s3-secrets.env";
copy($ENV{TEST_NGINX_SECRETS}, $secrets) or die "copy: $!";
open my $fh, '>>', $secrets or die $!;
print $fh "S3_ACCESS_KEY_ID=$AK\nS3_SECRET_ACCESS_KEY=$SK\n";
close $fh;
chmod 0600, $secrets;

my $HTTP = <<"_EOC_";
orbit_postgres "$ENV{TEST_NGINX_PG_DSN}" pool=4;
orbit_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};
orbit_secrets $secrets;
orbit_channel_api whatsapp @{[ $wa->url ]}/v21.0;
orbit_public_url http://127.0.0.1:$port;
orbit_media s3 @{[ $s3->url ]}/ bucket=orbit-media region=eu-test-1;
orbit_media_fetch_allow 127.0.0.1;    # the fakes
orbit_jobs_backoff 200ms max=1s;
orbit_jobs_poll 1s;
_EOC_

my $t = orbit_nginx(workers => 2, http_config => $HTTP,
                    config => "location /api/v1/media { orbit_api;"
                              . " client_max_body_size 4m; }\n");
$t->start;

my $ta = make_tenant('s3');
my $tok = user_token(make_user($ta, 'ADMIN'), $ta, 'ADMIN');
my $http = HTTP::Tiny->new(timeout => 10);

sub upload {
    my ($bytes, $type) = @_;
    return api($t, 'POST', '/api/v1/media?filename=q.pdf', token => $tok,
               raw => $bytes, headers => { 'Content-Type' => $type });
}

# --- an upload goes to the bucket, signed
my $pdf = "%PDF-1.7\n" . join('', map { chr(($_ * 31) % 256) } 1 .. 20000);
my $r = upload($pdf, 'application/pdf');
is($r->{status}, 201, 'an upload to S3: 201') or diag($r->{body});
my $up = $r->{json};
my $key = "orbit-media/$ta/$up->{id}";
my ($put) = grep { $_->{method} eq 'PUT' } @{ $s3->calls };
is($put->{outcome}, 'put', 'the fake S3 took the PUT: its signature holds')
    or diag(explain($put));
is($put->{path}, "/$key", '... path-style: /bucket/tenant/id');
is($put->{headers}{'x-amz-content-sha256'}, sha256_hex($pdf),
   '... the payload\'s hash signed');
like($put->{headers}{authorization},
     qr{^AWS4-HMAC-SHA256 Credential=\Q$AK\E/\d{8}/eu-test-1/s3/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date, Signature=[0-9a-f]{64}$},
     '... the Authorization header as S3 wants it');
my $obj = $s3->control(GET => 'objects')->{objects}{$key};
is($obj->{sha256}, sha256_hex($pdf), 'the object is the file');
is($obj->{contentType}, 'application/pdf', '... with its type');
is(psql("SELECT storage || ' ' || key FROM media WHERE id = '$up->{id}'"),
   "s3 $ta/$up->{id}", 'the row names the storage and the key');

# --- read: a presigned URL, short-lived
$r = api($t, 'GET', "/api/v1/media/$up->{id}", token => $tok);
is($r->{status}, 302, 'reading it: 302');
my $loc = $r->{headers}{location} // '';
like($loc, qr{^\Q@{[ $s3->url ]}/$key\E\?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=.*&X-Amz-Expires=300&X-Amz-SignedHeaders=host&X-Amz-Signature=[0-9a-f]{64}$},
     '... to a presigned URL, 5 minutes');
my $got = $http->get($loc);
is($got->{status}, 200, 'the presigned URL opens at the fake S3')
    or diag($got->{content});
ok($got->{content} eq $pdf, '... the same bytes');
(my $tampered = $loc) =~ s/X-Amz-Expires=300/X-Amz-Expires=3000/;
is($http->get($tampered)->{status}, 403, 'a longer expiry: S3 refuses it');
is(api($t, 'GET', "/api/v1/media/$up->{id}")->{status}, 401,
   'no token: 401, no URL');

# --- providers get a presigned link too
my $pn = uniq('8');
my $watok = 'EAAG' . uniq('tok');
$r = api($t, 'POST', '/api/v1/channels', token => $tok,
         body => { channel => 'whatsapp', name => 'S3 line', accountId => $pn,
                   credentials => { accessToken => $watok } });
is($r->{status}, 201, 'a WhatsApp number connected');
$wa->tokens($pn => $watok);
my $hook = "http://127.0.0.1:$port/api/v1/whatsapp/webhook";
my $app_secret = secret('META_APP_SECRET');
my $cust = '1777' . substr(uniq(''), -7);
$r = $wa->emit(url => $hook, app_secret => $app_secret,
               payload => wa_text(phone_number_id => $pn, wa_id => $cust,
                                  body => 'the invoice?'));
is($r->{status}, 200, 'a customer writes');
my $conv = psql("SELECT id FROM conversations WHERE tenant_id = '$ta'");
$r = api($t, 'POST', '/api/v1/messages', token => $tok,
         body => { conversationId => $conv, type => 'document',
                   content => { media => { mediaId => $up->{id} } } });
is($r->{status}, 201, 'the upload sent as a document') or diag($r->{body});
my $mid = $r->{json}{id};
my $call;
ok(wait_until($W, sub {
    ($call) = grep { ($_->{json}{biz_opaque_callback_data} // '') eq $mid }
              @{ $wa->calls(path => "/v21.0/$pn/") };
    $call }), 'the Graph API receives it');
my $link = $call->{json}{document}{link} // '';
like($link, qr{^\Q@{[ $s3->url ]}/$key\E\?.*X-Amz-Expires=86400&}, '... with a presigned link for a day');
is($call->{json}{document}{filename}, 'q.pdf', '... and the file\'s name');
ok($http->get($link)->{content} eq $pdf, '... which opens');

# --- inbound media fetched into the bucket
my $photo = "\xff\xd8\xff" . join('', map { chr(($_ * 17) % 256) } 1 .. 9000);
my $media_id = '6' . substr(uniq(''), -12);
$wa->media(id => $media_id, mime_type => 'image/jpeg', content => $photo);
my $wamid = wa_wamid();
$r = $wa->emit(url => $hook, app_secret => $app_secret,
               payload => wa_media(phone_number_id => $pn, wa_id => $cust,
                                   id => $media_id, wamid => $wamid));
is($r->{status}, 200, 'a photo comes in');
my $ours;
ok(wait_until($W, sub {
    $ours = psql("SELECT content->'media'->>'mediaId' FROM messages"
                 . " WHERE provider_message_id = '$wamid'");
    $ours }), '... it is fetched');
$obj = $s3->control(GET => 'objects')->{objects}{"orbit-media/$ta/$ours"};
is($obj && $obj->{sha256}, sha256_hex($photo), '... into the bucket');
$r = api($t, 'GET', "/api/v1/media/$ours", token => $tok);
ok($r->{status} == 302
   && $http->get($r->{headers}{location})->{content} eq $photo,
   '... and read back through a presigned URL');

# --- the bucket refuses our key pair: nothing stored, a clear reason
$s3->control(POST => 's3', { accessKeyId => $AK, secretAccessKey => 'other',
                             region => 'eu-test-1',
                             buckets => [ 'orbit-media' ] });
my $n = psql("SELECT count(*) FROM media WHERE tenant_id = '$ta'");
$r = upload('refused', 'text/plain');
is($r->{status}, 503, 'a refused PUT: 503');
is(psql("SELECT count(*) FROM media WHERE tenant_id = '$ta'"), $n,
   '... no row');
like($t->error_log, qr/\[error\].*media storage: PUT .*S3 answered 403:.*SignatureDoesNotMatch/,
     '... S3\'s answer logged');

$t->stop;
no_bad_log($t);

# --- orbit_media s3 without the key pair in the secrets file
my $bad = orbit_nginx(http_config => <<"_EOC_");
orbit_postgres "$ENV{TEST_NGINX_PG_DSN}" pool=1;
orbit_secrets $ENV{TEST_NGINX_SECRETS};
orbit_media s3 http://127.0.0.1:1 bucket=b;
_EOC_
my $ok = eval { $bad->start; 1 };
my $why = $@;
ok(!$ok, 'no S3 keys: nginx does not start');
like($why, qr/\[emerg\].*"orbit_media s3" needs S3_ACCESS_KEY_ID/,
     '... saying why');

unlink $secrets;
done_testing;
