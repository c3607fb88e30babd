# The Telegram channel (src/channels/orbit_telegram.c) against the fake Bot
# API (t/node/fake-telegram.js): a bot connected over REST registers its
# webhook (setWebhook, by the channel.setup job) with our URL and a secret;
# updates posted by the fake to that URL with that secret become contacts,
# conversations and messages of every type; agents' replies reach the fake
# as the exact Bot API call; retries on 429 with retry_after, failure for
# good when the user blocked the bot.  A customer's photo or document is
# fetched by the media.fetch job (getFile, then the file's download) and
# kept (orbit_media local); files over 20 MB and unknown file_ids fail.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use Orbit::Test;
use Orbit::Fake;
use Orbit::FakeTelegram;
use HTTP::Tiny;
use Encode ();

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $W = Orbit::Nginx::valgrind_enabled() ? 30 : 8;
my $public = "http://127.0.0.1:$port";
my $servroot = File::Spec->rel2abs($ENV{TEST_NGINX_SERVROOT}
                                   // 't/servroot');

my $tg = Orbit::Fake->start('telegram');
tg_config($tg, allow_http => 1);

my $HTTP = <<"_EOC_";
orbit_channel_api telegram @{[ $tg->url ]};
orbit_public_url $public;
orbit_media local $servroot/media;
orbit_media_fetch_allow 127.0.0.1;    # the fakes
orbit_jobs_backoff 200ms max=1s;
orbit_jobs_poll 1s;
_EOC_

my $t = orbit_nginx(http_extra => $HTTP);
$t->start;

my $ta = make_tenant('tg');
my $admin = make_user($ta, 'ADMIN');
my $tok = user_token($admin, $ta, 'ADMIN');

my $token = tg_token();
my ($bot_id) = $token =~ /^(\d+):/;
tg_bots($tg, $token);

sub get {
    my ($path) = @_;
    return api($t, 'GET', $path, token => $tok);
}
sub setup_of {
    my ($id) = @_;
    return get("/api/v1/channels/$id")->{json}{setup} // {};
}
sub count_msgs {
    return psql("SELECT count(*) FROM messages WHERE tenant_id = '$ta'");
}

# --- connecting: the bot's id from its token, setWebhook, setup ok
my $r = api($t, 'POST', '/api/v1/channels', token => $tok,
            body => { channel => 'telegram', name => 'Support bot',
                      credentials => { botToken => $token } });
is($r->{status}, 201, 'a bot connected with its token alone')
    or diag($r->{body});
my $conn = $r->{json};
is($conn->{accountId}, $bot_id, '... its accountId is the bot\'s id');
unlike($r->{body}, qr/\Q$token\E/, '... the token is not in the answer');

ok(wait_until($W, sub { setup_of($conn->{id})->{status} eq 'ok' }),
   'its setup becomes ok') or diag(explain(setup_of($conn->{id})));
my ($set) = @{ $tg->calls(path => "/bot$token/setWebhook") };
ok($set, 'the fake received setWebhook');
my $hook = "$public/api/v1/channels/telegram/$bot_id/webhook";
is($set->{json}{url}, $hook, '... with our webhook URL');
like($set->{json}{secret_token}, qr/^[A-Za-z0-9_-]{1,256}$/,
     '... and a secret Telegram accepts');
is_deeply($set->{json}{allowed_updates}, [ 'message', 'edited_message' ],
          '... for messages and their edits');
my $wh = tg_webhook($tg, $token);
is($wh->{url}, $hook, 'the fake holds our URL as the bot\'s webhook');
my $secret = $wh->{secret_token};

# a bad token: Telegram's 401, the connection's setup failed with it
my $bad = tg_token();
$r = api($t, 'POST', '/api/v1/channels', token => $tok,
         body => { channel => 'telegram', name => 'Revoked',
                   credentials => { botToken => $bad } });
is($r->{status}, 201, 'a bot whose token Telegram does not know');
ok(wait_until($W, sub { setup_of($r->{json}{id})->{status} eq 'failed' }),
   '... setup failed');
is_deeply(setup_of($r->{json}{id})->{error},
          { code => 401, title => 'Unauthorized' },
          '... with Telegram\'s reason');

# a given accountId that is not the token's bot
$r = api($t, 'POST', '/api/v1/channels', token => $tok,
         body => { channel => 'telegram', name => 'Mismatch',
                   accountId => '4' . int(rand 1e9),
                   credentials => { botToken => tg_token() } });
is($r->{status}, 201, 'a bot with an accountId of another bot');
ok(wait_until($W, sub { setup_of($r->{json}{id})->{status} eq 'failed' }),
   '... setup failed');
like(setup_of($r->{json}{id})->{error}{title}, qr/another bot/,
     '... saying the token is another bot\'s');
$r = api($t, 'POST', '/api/v1/channels', token => $tok,
         body => { channel => 'telegram', name => 'No token' });
is($r->{status}, 400, 'neither accountId nor a token: 400');
like(join(' ', @{ $r->{json}{message} // [] }), qr/botToken/, '... says why');

# 429 with retry_after and 5xx: setWebhook retried
my $t2 = tg_token();
tg_bots($tg, $token, $t2);
$tg->force({ error => 429, retryAfter => 1, path => "/bot$t2/setWebhook" },
           { status => 502, body => 'Bad Gateway',
             path => "/bot$t2/setWebhook" });
$r = api($t, 'POST', '/api/v1/channels', token => $tok,
         body => { channel => 'telegram', name => 'Busy',
                   credentials => { botToken => $t2 } });
my $busy = $r->{json}{id};
ok(wait_until(3 * $W, sub { setup_of($busy)->{status} eq 'ok' }),
   '429 then 502: setWebhook retried until ok');
is(scalar @{ $tg->calls(path => "/bot$t2/setWebhook") }, 3,
   '... three calls');

# --- inbound end to end
my $user = { %Orbit::FakeTelegram::USER };
my $u = tg_text(text => 'Hi, my order #1042 has not arrived',
                message_id => 501);
$r = tg_update($tg, $token, $u);
is($r->{status}, 200, 'an update with the secret: 200') or diag($r->{body});
is($r->{json}{stored}, 1, '... one message stored');

my $convs = get('/api/v1/conversations?channel=telegram')->{json}{data};
is(scalar @$convs, 1, 'GET /conversations: one telegram conversation');
my $conv = $convs->[0]{id};
is(psql("SELECT k.name || '|' || ci.external_id FROM contacts k"
        . " JOIN contact_identities ci ON ci.contact_id = k.id"
        . " WHERE ci.tenant_id = '$ta' AND ci.channel = 'telegram'"),
   "Tatiana Volkova|$user->{id}",
   '... its contact: the user\'s name, the chat id as external id');
my $msgs = get("/api/v1/conversations/$conv/messages")->{json}{data};
my ($in) = grep { $_->{direction} eq 'inbound' } @$msgs;
is($in && $in->{content}{text}, 'Hi, my order #1042 has not arrived',
   'GET /conversations/:id/messages: the text');
is($in->{providerMessageId}, "$user->{id}:501",
   '... its provider id: chat id and message_id');

# the same update again (Telegram redelivers): stored once
$r = tg_update($tg, $token, $u);
is($r->{status}, 200, 'the same update again: 200');
is($r->{json}{duplicates}, 1, '... a duplicate');
is(psql("SELECT count(*) FROM messages WHERE tenant_id = '$ta'"
        . " AND provider_message_id = '$user->{id}:501'"), 1,
   '... stored once');

# --- an agent answers
sub send_msg {
    my (%b) = @_;
    my $r = api($t, 'POST', '/api/v1/messages', token => $tok,
                body => { conversationId => $conv, %b });
    die "send: $r->{status} $r->{body}" unless $r->{status} == 201;
    return $r->{json};
}
sub row {
    my ($id) = @_;
    my %m;
    @m{qw(status provider error)} = split /\|/,
        psql("SELECT status, coalesce(provider_message_id, ''),"
             . " coalesce(error::text, '') FROM messages WHERE id = '$id'");
    return \%m;
}
sub sends {
    my ($method) = @_;
    return grep { $_->{outcome} ne 'forced' }
           @{ $tg->calls(path => "/bot$token/" . ($method // 'send')) };
}

my $m = send_msg(content => 'Sorry! It ships today.');
ok(wait_until($W, sub { row($m->{id})->{status} eq 'sent' }),
   'an agent\'s reply: sent') or diag(explain(row($m->{id})));
my @calls = sends('sendMessage');
is(scalar @calls, 1, 'the fake received one sendMessage');
is($calls[0]{headers}{'content-type'}, 'application/json', '... as JSON');
is_deeply($calls[0]{json}, { chat_id => $user->{id},
                             text => 'Sorry! It ships today.' },
          '... exactly: the chat and the text');
is(row($m->{id})->{provider}, "$user->{id}:$calls[0]{message}{message_id}",
   '... the message has Telegram\'s id (same scheme as inbound)');

my $in_id = $in->{id};
my $rep = send_msg(content => 'Tracking: ZX-1', replyToId => $in_id);
ok(wait_until($W, sub { row($rep->{id})->{status} eq 'sent' }),
   'a reply to the customer\'s message: sent');
my ($rc) = grep { ($_->{json}{text} // '') eq 'Tracking: ZX-1' }
           sends('sendMessage');
is_deeply($rc->{json}{reply_parameters},
          { message_id => 501,
            allow_sending_without_reply => JSON::PP::true },
          '... with reply_parameters naming Telegram\'s message_id');
is($rc->{message}{reply_to_message}{message_id}, 501,
   '... which the fake found in that chat');

my $img = send_msg(type => 'image', content => {
    media => { url => 'https://cdn.example/p.jpg' },
    caption => 'your parcel' });
my $doc = send_msg(type => 'document', content => {
    media => { url => 'https://cdn.example/i.pdf', filename => 'i.pdf' } });
my $voice = send_msg(type => 'audio', content => {
    media => { url => 'https://cdn.example/v.ogg', mimeType => 'audio/ogg' } });
ok(wait_until($W, sub { !grep { row($_)->{status} ne 'sent' }
                        $img->{id}, $doc->{id}, $voice->{id} }),
   'an image, a document and a voice note: sent');
is_deeply((sends('sendPhoto'))[0]{json},
          { chat_id => $user->{id}, photo => 'https://cdn.example/p.jpg',
            caption => 'your parcel' }, '... sendPhoto by URL with caption');
is((sends('sendDocument'))[0]{json}{document}, 'https://cdn.example/i.pdf',
   '... sendDocument');
is((sends('sendVoice'))[0]{json}{voice}, 'https://cdn.example/v.ogg',
   '... sendVoice');

$r = api($t, 'POST', '/api/v1/messages', token => $tok,
         body => { conversationId => $conv, content => 'x' x 4097 });
is($r->{status}, 400, 'a text over 4096 characters: refused (not split)');
my $tpl = send_msg(type => 'template', content => { template => {
    name => 'order_update', language => 'en_US' } });
ok(wait_until($W, sub { row($tpl->{id})->{status} eq 'failed' }),
   'a template: failed, Telegram has none');
like(row($tpl->{id})->{error}, qr/does not send this type/, '... saying why');

# 429 with retry_after: retried after it
$tg->force({ error => 429, retryAfter => 2, path => "/bot$token/sendMessage" });
my $t0 = time;
my $m3 = send_msg(content => 'after a 429');
ok(wait_until(3 * $W, sub { row($m3->{id})->{status} eq 'sent' }),
   '429, then sent');
cmp_ok(time - $t0, '>=', 1.9, '... not before retry_after');
is(scalar(grep { ($_->{json}{text} // '') eq 'after a 429' }
          sends('sendMessage')), 1, '... and sent once');

# 500: retried
$tg->force({ error => 500, path => "/bot$token/sendMessage" });
my $m5 = send_msg(content => 'after a 500');
ok(wait_until(3 * $W, sub { row($m5->{id})->{status} eq 'sent' }),
   '500, then sent');

# the user blocked the bot: failed for good with Telegram's reason
tg_chat($tg, $token, chat => { id => $user->{id}, type => 'private' },
        blocked => 1);
my $m4 = send_msg(content => 'are you there?');
ok(wait_until($W, sub { row($m4->{id})->{status} eq 'failed' }),
   'blocked by the user: failed');
like(row($m4->{id})->{error}, qr/"code": ?403.*blocked by the user/,
     '... with Telegram\'s error_code and description');
sleep 0.5;
is(psql("SELECT attempts || ' ' || status FROM jobs WHERE kind ="
        . " 'message.send' AND payload->>'messageId' = '$m4->{id}'"),
   '1 failed', '... and never tried again');
tg_chat($tg, $token, chat => { id => $user->{id}, type => 'private' });

# --- every inbound type
my %types = (
    photo => [ tg_photo(file_id => 'PHOTO-BIG', caption => 'the box'),
               'image', sub { $_[0]{media}{id} eq 'PHOTO-BIG'
                              && $_[0]{media}{provider} eq 'telegram'
                              && $_[0]{media}{mimeType} eq 'image/jpeg'
                              && $_[0]{caption} eq 'the box' } ],
    document => [ tg_document(file_id => 'DOC-1'), 'document',
                  sub { $_[0]{media}{filename} eq 'invoice.pdf'
                        && $_[0]{media}{mimeType} eq 'application/pdf'
                        && $_[0]{media}{size} == 48213 } ],
    voice => [ tg_voice(file_id => 'VOICE-1'), 'audio',
               sub { $_[0]{media}{voice} && $_[0]{media}{id} eq 'VOICE-1'
                     && $_[0]{media}{mimeType} eq 'audio/ogg' } ],
    audio => [ tg_audio(file_id => 'AUDIO-1', file_name => 'song.mp3'),
               'audio', sub { $_[0]{media}{filename} eq 'song.mp3'
                              && !$_[0]{media}{voice} } ],
    video => [ tg_video(file_id => 'VIDEO-1', caption => 'see'), 'video',
               sub { $_[0]{media}{id} eq 'VIDEO-1'
                     && $_[0]{media}{mimeType} eq 'video/mp4'
                     && $_[0]{caption} eq 'see' } ],
    sticker => [ tg_sticker(file_id => 'STICKER-1'), 'sticker',
                 sub { $_[0]{media}{mimeType} eq 'image/webp'
                       && $_[0]{emoji} eq Encode::encode_utf8("\x{1f44d}") } ],
    location => [ tg_location(), 'location',
                  sub { $_[0]{location}{latitude} == 59.93863
                        && $_[0]{location}{longitude} == 30.31413 } ],
    contact => [ tg_contact(last_name => 'Petrov'), 'contacts',
                 sub { $_[0]{contacts}[0]{name}{formatted_name}
                           eq 'Ivan Petrov'
                       && $_[0]{contacts}[0]{phones}[0]{phone}
                           eq '+79991234567' } ],
    entities => [ tg_text(text => '/start now', entities => [
                      { type => 'bot_command', offset => 0, length => 6 } ]),
                  'text', sub { $_[0]{text} eq '/start now'
                                && !exists $_[0]{entities} } ],
);
for my $name (sort keys %types) {
    my ($update, $type, $check) = @{ $types{$name} };
    my $mid = $update->{message}{message_id};
    $r = tg_update($tg, $token, $update);
    is($r->{status}, 200, "$name: 200");
    my ($got) = grep { ($_->{providerMessageId} // '') eq "$user->{id}:$mid" }
        @{ get("/api/v1/conversations/$conv/messages?limit=100")
           ->{json}{data} };
    is($got && $got->{type}, $type, "... stored as $type");
    ok($got && $check->($got->{content}), '... in the inbox\'s shape')
        or diag(explain($got));
}

# a reply, an edit
my $q = tg_text(text => 'and this?', reply_to => 501);
tg_update($tg, $token, $q);
is(psql("SELECT r.provider_message_id FROM messages m JOIN messages r"
        . " ON r.id = m.reply_to_id WHERE m.tenant_id = '$ta'"
        . " AND m.provider_message_id = '$user->{id}:"
        . "$q->{message}{message_id}'"), "$user->{id}:501",
   'reply_to_message: the reply points at the message it answers');
my $ed = tg_text(text => 'Hi, my order #1043 has not arrived', edited => 1,
                 message_id => 501);
$r = tg_update($tg, $token, $ed);
is($r->{json}{stored}, 1, 'an edited_message: stored as a message of its own');
is(psql("SELECT m.content->>'edited' || ' ' || r.provider_message_id"
        . " FROM messages m JOIN messages r ON r.id = m.reply_to_id"
        . " WHERE m.tenant_id = '$ta' AND m.provider_message_id LIKE"
        . " '$user->{id}:501:e%'"), "true $user->{id}:501",
   '... marked edited, pointing at the original');

# a group's message and an update without a message: taken, not stored
my $before = count_msgs();
$r = tg_update($tg, $token, tg_text(chat => { id => -100123, type => 'group',
                                              title => 'Friends' }));
is($r->{status}, 200, 'a group\'s message: 200');
is($r->{json}{received}, 0, '... not stored (private chats only)');
$r = tg_update($tg, $token, { update_id => 1, callback_query => {
    id => '1', from => $user, data => 'x' } });
is($r->{status}, 200, 'an update without a message: 200, ignored');
is(count_msgs(), $before, '... nothing stored');

# --- refused
$r = tg_update($tg, $token, tg_text(), secret => 'not-the-secret');
is($r->{status}, 403, 'a wrong secret: 403');
$r = tg_update($tg, $token, tg_text(), secret => undef);
is($r->{status}, 403, 'no secret: 403');
$r = tg_update($tg, $token, tg_text(), secret => substr($secret, 0, 63));
is($r->{status}, 403, 'a prefix of the secret: 403');
$r = tg_update($tg, $token, '{"update_id": 1, "message": ');
is($r->{status}, 400, 'malformed JSON (with the secret): 400');
$r = tg_update($tg, $token, { update_id => 2, message => { text => 'x' } });
is($r->{status}, 400, 'a message without chat or ids: 400');
$r = tg_update($tg, $token, tg_text(),
               url => "$public/api/v1/channels/telegram/123456/webhook");
is($r->{status}, 404, 'an unknown bot id: 404');
is(count_msgs(), $before, 'nothing of them stored');

# --- media.fetch: getFile locates the file, its download is kept
sub fetch_job {
    my ($mid) = @_;
    return psql("SELECT j.status || '|' || coalesce(j.last_error, '')"
                . " FROM jobs j JOIN messages m"
                . " ON m.id::text = j.payload->>'messageId'"
                . " WHERE j.kind = 'media.fetch' AND m.tenant_id = '$ta'"
                . " AND m.provider_message_id = '$user->{id}:$mid'");
}
sub media_in {
    my ($update) = @_;
    my $mid = $update->{message}{message_id};
    my $r = tg_update($tg, $token, $update);
    die "update: $r->{status}" unless $r->{status} == 200;
    return psql("SELECT id FROM messages WHERE tenant_id = '$ta'"
                . " AND provider_message_id = '$user->{id}:$mid'");
}
sub fetched {
    my ($id) = @_;
    my $ours;
    wait_until($W, sub {
        $ours = psql("SELECT content->'media'->>'mediaId' FROM messages"
                     . " WHERE id = '$id'");
        $ours });
    return $ours;
}
sub tg_calls {
    my ($path, $outcome) = @_;
    return grep { !$outcome || $_->{outcome} eq $outcome }
           @{ $tg->calls(path => $path) };
}

my $jpeg = "\xff\xd8\xff\xe0" . join('', map { chr($_ * 17 % 256) } 1 .. 6000);
my $pf = tg_file($tg, $token, content => $jpeg,
                 file_path => 'photos/file_7.jpg');
my $photo_id = media_in(tg_photo(file_id => $pf->{file_id},
                                 caption => 'the dent'));
my $ours = fetched($photo_id);
ok($ours, 'a photo: its media is fetched, the message names our copy')
    or diag(psql("SELECT status || ' ' || coalesce(last_error, '') FROM jobs"
                 . " WHERE kind = 'media.fetch'"));
my @gf = grep { ($_->{query}{file_id} // '') eq $pf->{file_id} }
         tg_calls("/bot$token/getFile");
is(scalar @gf, 1, '... getFile asked once, for its file_id');
my @dl = tg_calls("/file/bot$token/photos/file_7.jpg", 'download');
is(scalar @dl, 1, '... then the file downloaded once');
ok(@gf && @dl && $dl[0]{time} >= $gf[0]{time}, '... in that order');

$r = get("/api/v1/media/$ours");
is($r->{status}, 200, 'GET /api/v1/media/{id} of the copy');
ok($r->{body} eq $jpeg, '... the customer\'s bytes');
is($r->{headers}{'content-type'}, 'image/jpeg',
   '... as image/jpeg (the download says application/octet-stream)');
my ($got) = grep { $_->{id} eq $photo_id }
    @{ get("/api/v1/conversations/$conv/messages?limit=100")->{json}{data} };
is($got && $got->{content}{media}{url}, "/api/v1/media/$ours",
   'the message lists our URL');
is($got && $got->{content}{media}{id}, $pf->{file_id},
   '... and keeps the file_id');
is($got && $got->{content}{media}{size}, length $jpeg, '... and the size');
is($got && $got->{content}{caption}, 'the dent', '... and the caption');

my $pdf = "%PDF-1.4\n" . ('claim ' x 500) . "\n%%EOF\n";
my $df = tg_file($tg, $token, content => $pdf,
                 file_path => 'documents/file_3.pdf');
my $doc_id = media_in(tg_document(file_id => $df->{file_id},
                                  file_name => 'claim.pdf',
                                  file_size => length $pdf));
$ours = fetched($doc_id);
ok($ours, 'a document: fetched');
$r = get("/api/v1/media/$ours");
ok($r->{status} == 200 && $r->{body} eq $pdf, '... the same bytes');
is($r->{headers}{'content-type'}, 'application/pdf', '... its type');
is($r->{headers}{'content-disposition'}, 'inline; filename="claim.pdf"',
   '... and its file_name');

# over 20 MB: by the update's file_size, before getFile; by getFile's
# answer (Telegram's 400 "file is too big") when the update gave none
my $big = tg_file($tg, $token, content => 'x', file_path => 'documents/big',
                  file_size => 25 * 1024 * 1024);
my $u1 = tg_document(file_id => $big->{file_id}, file_name => 'big.zip',
                     file_size => 25 * 1024 * 1024);
my $u2 = tg_document(file_id => $big->{file_id}, file_name => 'big.zip',
                     file_size => undef);
for my $c ([ $u1, 'the update', qr/at most 20 MB/, 0 ],
           [ $u2, 'getFile', qr/400.*file is too big/, 1 ]) {
    my ($u, $by, $why, $asked) = @$c;
    my $id = media_in($u);
    my $job;
    ok(wait_until($W, sub {
           ($job = fetch_job($u->{message}{message_id})) =~ /^failed/ }),
       "a file over 20 MB by $by: failed for good") or diag($job);
    like($job, $why, '... saying why');
    is(psql("SELECT content->'media' ? 'mediaId' FROM messages"
            . " WHERE id = '$id'"), 'f', '... the message keeps the file_id');
}
is(scalar(grep { ($_->{query}{file_id} // '') eq $big->{file_id} }
          tg_calls("/bot$token/getFile")), 1,
   '... getFile asked only when the update gave no file_size');
is(scalar(tg_calls("/file/bot$token/documents/big")), 0,
   '... and never downloaded');

my $gone = tg_photo(file_id => 'AgACunknown' . int rand 1e9);
my $gone_id = media_in($gone);
my $job;
ok(wait_until($W, sub {
       ($job = fetch_job($gone->{message}{message_id})) =~ /^failed/ }),
   'a file_id Telegram does not know: failed for good') or diag($job);
like($job, qr/invalid file_id/, '... with Telegram\'s description');

# --- without orbit_public_url: setup failed with the reason
$t->stop;
no_bad_log($t);
my $t3 = orbit_nginx(http_extra => 'orbit_channel_api telegram '
                                   . $tg->url . ";\norbit_jobs_poll 1s;\n");
$t3->start;
my $t4 = tg_token();
tg_bots($tg, $token, $t2, $t4);
$r = api($t3, 'POST', '/api/v1/channels', token => $tok,
         body => { channel => 'telegram', name => 'Nowhere',
                   credentials => { botToken => $t4 } });
my $nowhere = $r->{json}{id};
ok(wait_until($W, sub {
       (api($t3, 'GET', "/api/v1/channels/$nowhere", token => $tok)
        ->{json}{setup}{status} // '') eq 'failed' }),
   'without orbit_public_url: setup failed');
like(api($t3, 'GET', "/api/v1/channels/$nowhere", token => $tok)
     ->{json}{setup}{error}{title}, qr/orbit_public_url/, '... saying why');
is(scalar @{ $tg->calls(path => "/bot$t4/") }, 0,
   '... and Telegram was not called');

$t3->stop;
$tg->stop;
no_bad_log($t3);

done_testing;
