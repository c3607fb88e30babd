# Self-test of the suites' fakes of outside services, no nginx involved:
# t/node/fake-whatsapp.js (the WhatsApp Cloud API), t/node/fake-api-peer.js
# (a peer of the API channel) and t/lib/Orbit/Fake.pm, which starts them and
# builds WhatsApp webhook payloads.  Signatures are checked at a listener of
# this file's own (Perl, Digest::SHA), not by the fakes themselves.

use strict;
use warnings;
use Test::More;
use Digest::SHA qw(hmac_sha256_hex sha256_hex);
use Encode qw(encode_utf8);
use File::Basename qw(dirname);
use File::Spec ();
use File::Temp ();
use HTTP::Tiny ();
use IO::Socket::INET ();
use JSON::PP ();
use MIME::Base64 qw(decode_base64 encode_base64);
use POSIX ();
use Time::HiRes qw(time sleep);
use Orbit::Node qw(free_port);
use Orbit::Fake;
use Orbit::Test qw(wait_until);

my $JSON = JSON::PP->new->utf8->canonical;
my $LIB = File::Spec->rel2abs(dirname(__FILE__) . '/lib');
my $V = '/v21.0';
my $PHONE = '106540352242922';
my $TOKEN = 'EAAGm0PX4ZCpsBA' . $$;
my $SECRET = "app-secret-$$";
my $TRUE = JSON::PP::true;
my $t0;

# --- a plain HTTP client and a listener of our own

sub http_req {
    my ($method, $url, %o) = @_;
    my %h = %{ $o{headers} // {} };
    $h{Authorization} = "Bearer $o{token}" if $o{token};
    my %req = (headers => \%h);
    if (exists $o{json}) {
        $req{content} = $JSON->encode($o{json});
    } elsif (defined $o{raw}) {
        $req{content} = $o{raw};
    }
    $h{'Content-Type'} //= 'application/json' if defined $req{content};
    my $http = HTTP::Tiny->new(timeout => $o{timeout} // 5,
                               keep_alive => 0);
    my $start = time;
    my $res = $http->request($method, $url, \%req);
    $res->{seconds} = time - $start;
    $res->{json} = eval { $JSON->decode($res->{content}) }
        if ($res->{headers}{'content-type'} // '') =~ m{application/json};
    return $res;
}

# Records each request it gets (body raw, base64 in a JSON line of a file)
# and answers 202 "ok"; in a process of its own, ended at the end.
my @LISTENERS;
END {
    local $?;
    for (@LISTENERS) { kill 'KILL', $_->{pid}; waitpid $_->{pid}, 0 }
}

sub perl_listener {
    my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                    LocalPort => free_port(), Listen => 16,
                                    Proto => 'tcp', ReuseAddr => 1)
        or die "listen: $!";
    my $log = File::Temp->new(TEMPLATE => 'orbit-fake-XXXXXX', TMPDIR => 1);
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        alarm 60;
        while (my $c = $srv->accept) {
            my $head = do { local $/ = "\r\n\r\n"; <$c> } // next;
            my ($line, @lines) = split /\r\n/, $head;
            my %h = map { /^([^:]+):\s*(.*)\z/ ? (lc $1 => $2) : () } @lines;
            my $body = '';
            read($c, $body, $h{'content-length'}) if $h{'content-length'};
            my ($method, $path) = split ' ', $line;
            open my $fh, '>>', $log->filename or die;
            print {$fh} $JSON->encode({ method => $method, path => $path,
                headers => \%h, body => encode_base64($body, '') }), "\n";
            close $fh;
            print {$c} "HTTP/1.1 202 Accepted\r\nContent-Type: text/plain\r\n"
                . "Content-Length: 2\r\nConnection: close\r\n\r\nok";
            close $c;
        }
        POSIX::_exit(0);
    }
    my $l = { pid => $pid, port => $srv->sockport, log => $log };
    close $srv;
    push @LISTENERS, $l;
    return $l;
}

# what the listener got (whole lines only), waiting for $n of them
sub listened {
    my ($l, $n, $secs) = @_;
    my $deadline = time + ($secs // 5);
    while (1) {
        open my $fh, '<', $l->{log}->filename or die;
        my @got = map { my $r = $JSON->decode($_);
                        $r->{body} = decode_base64($r->{body}); $r }
                  grep { /\n\z/ } <$fh>;
        return \@got if @got >= ($n // 0) || time >= $deadline;
        sleep 0.02;
    }
}

# gone: no such process, or only a zombie
sub gone {
    my ($pid) = @_;
    return 1 unless kill 0, $pid;
    open my $fh, '<', "/proc/$pid/stat" or return 1;
    return (split ' ', scalar <$fh>)[2] eq 'Z';
}

my $L = perl_listener();
my $LURL = "http://127.0.0.1:$L->{port}";


# --- start
my $wa = Orbit::Fake->start('whatsapp');
my $peer = Orbit::Fake->start('api-peer');
like($wa->url, qr{^http://127\.0\.0\.1:(\d+)\z}, 'whatsapp: its url');
ok($wa->port < 32768 && $peer->port < 32768 && $wa->port != $peer->port,
   '... each on a port of its own below 32768');
ok(!eval { Orbit::Fake->start('telex') } && $@ =~ /no fake 'telex'/,
   'an unknown fake: dies saying so');

sub wa_send {
    my ($body, %o) = @_;
    my $phone = delete $o{phone} // $PHONE;
    return http_req(POST => $wa->url . "$V/$phone/messages",
                    token => exists $o{token} ? $o{token} : $TOKEN,
                    (ref $body ? (json => $body) : (raw => $body)), %o);
}

is_deeply($wa->tokens($PHONE => $TOKEN, 2000 => [qw(other-1 other-2)]),
          { $PHONE => [$TOKEN], 2000 => [qw(other-1 other-2)] },
          'tokens: set per phone number id');


# --- a well-formed send
my $text = { messaging_product => 'whatsapp', recipient_type => 'individual',
             to => '+1 631-555-1234', type => 'text',
             text => { preview_url => JSON::PP::false,
                       body => "hello \x{2603}" } };
my $r = wa_send($text);
is($r->{status}, 200, 'a text send: 200');
like($r->{headers}{'content-type'}, qr{^application/json}, '... JSON');
my $sent = $r->{json};
is_deeply([ sort keys %$sent ], [qw(contacts messages messaging_product)],
          '... messaging_product, contacts, messages and nothing else');
is($sent->{messaging_product}, 'whatsapp', '... messaging_product');
is_deeply($sent->{contacts},
          [ { input => '+1 631-555-1234', wa_id => '16315551234' } ],
          '... contacts: the input as given, wa_id its digits');
my $wamid = $sent->{messages}[0]{id} // '';
ok(@{ $sent->{messages} } == 1 && keys %{ $sent->{messages}[0] } == 1,
   '... one message, with an id only');
like($wamid, qr{^wamid\.[A-Za-z0-9+/]+=*\z}, '... a wamid');
like(decode_base64(substr $wamid, 6), qr/^\x1c\x18\x0b16315551234\x15/,
     '... shaped as Meta\'s (base64 of the recipient and an id)');
my $r2 = wa_send($text);
ok($r2->{json}{messages}[0]{id} ne $wamid, 'a second send: another wamid');

my $calls = $wa->calls(path => "$V/$PHONE/messages");
is(scalar @$calls, 2, 'calls: both recorded');
my $c = $calls->[0];
is("$c->{method} $c->{path}", "POST $V/$PHONE/messages",
   '... method and path');
is($c->{headers}{authorization}, "Bearer $TOKEN", '... headers');
is(encode_utf8($c->{body}), $JSON->encode($text), '... the raw body');
is($c->{size}, length $JSON->encode($text), '... its size in bytes');
is_deeply($c->{json}, $text, '... the body parsed');
ok(abs($c->{time} - time) < 10, '... its time');
is($c->{outcome}, 'sent', '... outcome "sent"');
is($c->{wamid}, $wamid, '... the wamid given');
is($c->{response}{status}, 200, '... and the answer');
is(scalar @{ $wa->calls(since => 1) }, 1, 'calls(since => 1)');
is(scalar @{ $wa->calls(path => '/v9') }, 0, 'calls(path => a prefix)');


# --- refusals
for my $case (['a wrong token', 'wrong'], ['no token', undef],
              ["another phone number id's token", 'other-1']) {
    my ($name, $token) = @$case;
    $r = wa_send($text, token => $token);
    is($r->{status}, 401, "$name: 401");
    my $e = $r->{json}{error} // {};
    ok($e->{message} eq 'Invalid OAuth access token - Cannot parse access'
       . ' token' && $e->{type} eq 'OAuthException' && $e->{code} == 190
       && $e->{fbtrace_id} =~ /^A[\w-]{10,}\z/
       && keys %$e == 4, "... Graph's error 190") or diag(explain($r->{json}));
}
is(scalar @{ $wa->calls(outcome => 'unauthorized') }, 3,
   'recorded as unauthorized');

sub without { my ($h, @k) = @_; my %c = %$h; delete @c{@k}; return \%c }
my %to = (messaging_product => 'whatsapp', to => '16315551234');
my @bad = (
    ['no messaging_product', without($text, 'messaging_product')],
    ['messaging_product "sms"', { %$text, messaging_product => 'sms' }],
    ['no "to"', without($text, 'to')],
    ['"to" not a number', { %$text, to => 'alice' }],
    ['type "fax"', { %to, type => 'fax', fax => { body => 'x' } }],
    ['text with no body', { %to, type => 'text', text => {} }],
    ['an empty text body', { %to, type => 'text', text => { body => '' } }],
    ['a text body of 4097 characters',
     { %to, type => 'text', text => { body => 'x' x 4097 } }],
    ['type image, no image object', { %to, type => 'image' }],
    ['image with neither id nor link',
     { %to, type => 'image', image => { caption => 'c' } }],
    ['image with both id and link', { %to, type => 'image',
      image => { id => '1', link => 'https://example.com/a.jpg' } }],
    ['a caption on audio',
     { %to, type => 'audio', audio => { id => '1', caption => 'c' } }],
    ['template with no language', { %to, type => 'template',
      template => { name => 'order_update' } }],
    ['template with no name', { %to, type => 'template',
      template => { language => { code => 'en_US' } } }],
    ['location with no latitude',
     { %to, type => 'location', location => { longitude => 1 } }],
    ['reaction with no message_id',
     { %to, type => 'reaction', reaction => { emoji => 'x' } }],
    ['interactive button with 4 buttons', { %to, type => 'interactive',
      interactive => { type => 'button', body => { text => 'Pick' },
        action => { buttons => [ map { { type => 'reply',
          reply => { id => "b$_", title => "B$_" } } } 1 .. 4 ] } } }],
    ['context with no message_id', { %$text, context => {} }],
    ['not JSON', '{"messaging_product":'],
    ['JSON sent as text/plain',
     [ $text, headers => { 'Content-Type' => 'text/plain' } ]],
);
for my $case (@bad) {
    my ($name, $body) = @$case;
    $r = wa_send(ref $body eq 'ARRAY' ? @$body : $body);
    my $e = $r->{json}{error} // {};
    ok($r->{status} == 400 && $e->{code} == 100
       && $e->{message} eq '(#100) Invalid parameter'
       && $e->{type} eq 'OAuthException'
       && $e->{error_data}{messaging_product} eq 'whatsapp'
       && $e->{error_data}{details} =~ /\S/ && $e->{fbtrace_id},
       "$name: 400, Graph's error 100 with details")
        or diag("$r->{status} $r->{content}");
}

my $link = 'https://example.com/files/a.pdf';
my @good = (
    ['a text body of 4096 characters (8192 bytes)',
     { %to, type => 'text', text => { body => "\x{e9}" x 4096 } }],
    ['text by default, with no type', { %to, text => { body => 'x' } }],
    ['image by id', { %to, type => 'image',
                      image => { id => '1234', caption => 'c' } }],
    ['image by link', { %to, type => 'image',
                        image => { link => 'https://example.com/a.jpg' } }],
    ['document by link, filename and caption', { %to, type => 'document',
      document => { link => $link, filename => 'a.pdf', caption => 'c' } }],
    (map { ["$_ by id", { %to, type => $_, $_ => { id => '42' } }] }
     qw(audio video sticker)),
    ['location', { %to, type => 'location', location => {
      latitude => 38.9, longitude => -77.03, name => 'HQ',
      address => '1 Main St' } }],
    ['contacts', { %to, type => 'contacts', contacts => [ {
      name => { formatted_name => 'John Smith' },
      phones => [ { phone => '+1 555 0100', type => 'CELL' } ] } ] }],
    ['template with components', { %to, type => 'template', template => {
      name => 'order_update', language => { code => 'en_US' },
      components => [
        { type => 'header', parameters => [
          { type => 'image', image => { link => 'https://e.com/a.jpg' } } ] },
        { type => 'body', parameters => [ { type => 'text',
                                            text => '#123' } ] },
        { type => 'button', sub_type => 'quick_reply', index => '0',
          parameters => [ { type => 'payload', payload => 'yes' } ] } ] } }],
    ['interactive buttons', { %to, type => 'interactive', interactive => {
      type => 'button', body => { text => 'Pick one' }, action => {
        buttons => [ { type => 'reply',
                       reply => { id => 'yes', title => 'Yes' } } ] } } }],
    ['interactive list', { %to, type => 'interactive', interactive => {
      type => 'list', body => { text => 'Menu' }, action => {
        button => 'Open', sections => [ { title => 'S', rows => [
          { id => 'r1', title => 'Row' } ] } ] } } }],
    ['reaction', { %to, type => 'reaction', reaction => {
      message_id => $wamid, emoji => "\x{1f44d}" } }],
    ['a reply (context)', { %$text, context => { message_id => $wamid } }],
);
for my $case (@good) {
    my ($name, $body) = @$case;
    $r = wa_send($body);
    ok($r->{status} == 200
       && ($r->{json}{messages}[0]{id} // '') =~ /^wamid\./,
       "$name: sent") or diag("$r->{status} $r->{content}");
}
is($r->{json}{messages}[0]{message_status}, undef,
   'a text: no message_status');
my ($template) = map { $_->[1] } grep { $_->[0] =~ /^template/ } @good;
$r = wa_send($template);
is($r->{json}{messages}[0]{message_status}, 'accepted',
   'a template: message_status "accepted"');

$r = wa_send({ messaging_product => 'whatsapp', status => 'read',
               message_id => $wamid });
is($r->{status}, 200, 'mark as read: 200');
is_deeply($r->{json}, { success => $TRUE }, '... {"success":true}');
is($wa->calls(outcome => 'read')->[0]{json}{message_id}, $wamid,
   '... recorded as "read"');
$r = wa_send({ messaging_product => 'whatsapp', status => 'delivered',
               message_id => $wamid });
is($r->{json}{error}{code}, 100, 'a status other than read: error 100');


# --- forced answers
my $mark = @{ $wa->calls };
is($wa->force({ status => 500, times => 2,
                body => { error => { message => 'boom', code => 1 } } },
              { status => 429, headers => { 'Retry-After' => '7' },
                error => 130429 },
              { error => 131047 }, { error => 131026 }),
   5, 'force: 5 pending (times => 2 counts twice)');
my @got = map { wa_send($text) } 1 .. 6;
is_deeply([ map { $_->{status} } @got ], [500, 500, 429, 400, 400, 200],
          '... answered in order, then as usual');
is($got[0]{json}{error}{message}, 'boom', '... a body as given');
is($got[2]{headers}{'retry-after'}, '7', '... a header as given');
is($got[2]{json}{error}{code}, 130429, '... a Graph error by its code');
my $e = $got[3]{json}{error};
ok($e->{code} == 131047 && $e->{message} eq '(#131047) Re-engagement message'
   && $e->{type} eq 'OAuthException'
   && $e->{error_data}{details} =~ /24 hours/,
   '... 131047: re-engagement (outside 24 h)') or diag(explain($e));
is($got[4]{json}{error}{code}, 131026, '... 131026: undeliverable');
is_deeply($wa->pending, [], '... none left');
is_deeply([ map { $_->{outcome} } @{ $wa->calls(since => $mark) } ],
          [ ('forced') x 5, 'sent' ], '... recorded as forced');


# --- delays, hang, close
$wa->delay(200);
$r = wa_send($text);
ok($r->{status} == 200 && $r->{seconds} >= 0.19,
   sprintf 'delay 200 ms: answered after %.2f s', $r->{seconds});
$wa->delay(0);
$r = wa_send($text);
ok($r->{seconds} < 0.15, sprintf 'delay 0: at once (%.2f s)', $r->{seconds});
$wa->force({ delay => 200, status => 502 });
$r = wa_send($text);
ok($r->{status} == 502 && $r->{seconds} >= 0.19,
   'a forced answer with a delay');

$wa->force({ hang => 1 });
$r = wa_send($text, timeout => 0.3);
ok($r->{status} == 599 && $r->{content} =~ /timed? ?out/i,
   'hang: the client times out') or diag("$r->{status} $r->{content}");
ok($r->{seconds} >= 0.28 && $r->{seconds} < 2, '... after its timeout');
my ($hung) = @{ $wa->calls(outcome => 'hang') };
ok($hung && !$hung->{response}, '... recorded, never answered');
ok(wait_until(3, sub {
       $wa->calls(outcome => 'hang')->[0]{clientClosedAt} }),
   '... the client\'s close is recorded');
is(wa_send($text)->{status}, 200, '... the next request is answered');

$wa->force({ close => 1 });
$r = wa_send($text);
ok($r->{status} == 599 && $r->{seconds} < 1,
   'close: the connection is dropped, no answer')
    or diag("$r->{status} $r->{content}");
is(scalar @{ $wa->calls(outcome => 'close') }, 1, '... recorded');


# --- media
my $bytes = join('', map { chr } 0 .. 255) x 4;
my $MID = '1037543291543636';
is_deeply($wa->media(id => $MID, mime_type => 'image/jpeg',
                     content => $bytes),
          { id => $MID, mime_type => 'image/jpeg',
            sha256 => sha256_hex($bytes), file_size => 1024 },
          'media: registered');
$r = http_req(GET => $wa->url . "$V/$MID?phone_number_id=$PHONE",
              token => $TOKEN);
is($r->{status}, 200, 'GET /VERSION/MEDIA_ID: 200');
my $info = $r->{json};
is_deeply([ sort keys %$info ],
          [qw(file_size id messaging_product mime_type sha256 url)],
          '... the fields of Graph\'s answer');
ok($info->{messaging_product} eq 'whatsapp' && $info->{id} eq $MID
   && $info->{mime_type} eq 'image/jpeg' && $info->{file_size} == 1024
   && $info->{sha256} eq sha256_hex($bytes), '... their values');
my $u = $wa->url;
like($info->{url}, qr{^\Q$u\E/media-download/$MID\?\S+\z}, '... a url');
is_deeply($wa->calls(path => "$V/$MID")->[0]{query},
          { phone_number_id => $PHONE }, '... the query recorded');
$r = http_req(GET => $info->{url}, token => $TOKEN);
ok($r->{status} == 200 && $r->{content} eq $bytes,
   'the url with the Bearer: the bytes');
is($r->{headers}{'content-type'}, 'image/jpeg', '... with their type');
is(http_req(GET => $info->{url})->{status}, 401, '... no Bearer: 401');
$r = http_req(GET => $wa->url . "$V/$MID", token => 'wrong');
is($r->{json}{error}{code}, 190, 'media with a wrong token: error 190');
$r = http_req(GET => $wa->url . "$V/999", token => $TOKEN);
ok($r->{status} == 400 && $r->{json}{error}{code} == 100
   && $r->{json}{error}{message} =~ /Object with ID '999' does not exist/,
   'unknown media: error 100');
$wa->force({ path => '/media-download/', status => 503 });
is(wa_send($text)->{status}, 200,
   'a forced answer for a path: other paths do not take it');
is(http_req(GET => $info->{url}, token => $TOKEN)->{status}, 503,
   '... its path does');


# --- emit, checked at our own listener
my $payload = wa_text(body => "ol\x{e1} \x{2603}", name => "Zo\x{eb}");
$r = $wa->emit(url => "$LURL/webhooks/whatsapp?x=1", secret => $SECRET,
               payload => $payload);
ok($r->{status} == 202 && $r->{body} eq 'ok',
   'emit: the target\'s status and body') or diag(explain($r));
my $in = listened($L, 1)->[0] // {};
is("$in->{method} $in->{path}", 'POST /webhooks/whatsapp?x=1',
   '... a POST to the url');
is($in->{headers}{'content-type'}, 'application/json', '... JSON');
is($in->{headers}{'x-hub-signature-256'},
   'sha256=' . hmac_sha256_hex($in->{body}, $SECRET),
   '... X-Hub-Signature-256: Digest::SHA computes the same');
is($in->{headers}{'content-length'}, length $in->{body}, '... its length');
is_deeply($JSON->decode($in->{body}), $payload, '... the payload');
ok($r->{sent}{signature} eq $in->{headers}{'x-hub-signature-256'}
   && encode_utf8($r->{sent}{body}) eq $in->{body},
   '... and emit says what it sent');

$r = $wa->emit(url => "$LURL/bad", secret => $SECRET, payload => $payload,
               signature => 'sha256=' . '0' x 64);
$in = listened($L, 2)->[1] // {};
is($in->{headers}{'x-hub-signature-256'}, 'sha256=' . '0' x 64,
   'emit, a signature given: that one is sent');
isnt($in->{headers}{'x-hub-signature-256'},
     'sha256=' . hmac_sha256_hex($in->{body}, $SECRET), '... a wrong one');
$wa->emit(url => "$LURL/none", secret => $SECRET, payload => $payload,
          signature => undef);
$in = listened($L, 3)->[2] // {};
ok($in->{path} eq '/none' && !exists $in->{headers}{'x-hub-signature-256'},
   'emit, signature undef: no signature header');
my $broken = '{"object":"whatsapp_business_account","entry":[';
$wa->emit(url => "$LURL/raw", secret => $SECRET, payload => $broken);
$in = listened($L, 4)->[3] // {};
ok($in->{body} eq $broken && $in->{headers}{'x-hub-signature-256'} eq
   'sha256=' . hmac_sha256_hex($broken, $SECRET),
   'emit, a string: sent as it is, signed');
$wa->emit(url => "$LURL/bytes", secret => $SECRET, bytes => "\xff\xfe{}");
$in = listened($L, 5)->[4] // {};
ok($in->{body} eq "\xff\xfe{}" && $in->{headers}{'x-hub-signature-256'} eq
   'sha256=' . hmac_sha256_hex("\xff\xfe{}", $SECRET),
   'emit, bytes (not UTF-8): sent as they are, signed');
my $refused = free_port();
$r = $wa->emit(url => "http://127.0.0.1:$refused/", secret => $SECRET,
               payload => {});
ok(!defined $r->{status} && $r->{error} =~ /ECONNREFUSED/,
   'emit, nobody listening: no status, the error') or diag(explain($r));
is_deeply([ map { $_->{kind} } @{ $wa->outbox } ], [ ('emit') x 6 ],
          'outbox: each emit');


# --- auto-statuses
$wa->auto_status(url => "$LURL/statuses", app_secret => $SECRET,
                 delay => 20);
$wamid = wa_send($text)->{json}{messages}[0]{id};
my @hooks = @{ listened($L, 8) }[5 .. 7];
is(scalar(grep { defined } @hooks), 3, 'auto-status: 3 webhooks');
ok(!grep({ $_->{headers}{'x-hub-signature-256'} ne
           'sha256=' . hmac_sha256_hex($_->{body}, $SECRET) } @hooks),
   '... each signed with the app secret');
my @st = map { $JSON->decode($_->{body}) } @hooks;
my @s = map { $_->{entry}[0]{changes}[0]{value}{statuses}[0] } @st;
is_deeply([ map { $_->{status} } @s ], [qw(sent delivered read)],
          '... sent, delivered, read, in order');
ok(!grep({ $_->{id} ne $wamid || $_->{recipient_id} ne '16315551234'
           || $_->{timestamp} !~ /^\d+\z/ } @s),
   '... of the message sent, to its recipient, with a timestamp');
my $v = $st[0]{entry}[0]{changes}[0];
ok($st[0]{object} eq 'whatsapp_business_account' && $v->{field} eq 'messages'
   && $v->{value}{messaging_product} eq 'whatsapp'
   && $v->{value}{metadata}{phone_number_id} eq $PHONE,
   '... in a webhook of the phone number id');
ok($s[0]{conversation}{expiration_timestamp} && $s[0]{pricing}{category}
   eq 'service' && !$s[2]{conversation} && !$s[2]{pricing},
   '... sent with conversation and pricing, read without');
is($JSON->encode($s[2]), $JSON->encode({ id => $wamid, status => 'read',
   recipient_id => '16315551234', timestamp => $s[2]{timestamp} }),
   '... timestamp a string, as Meta sends it');
is(scalar @{ $wa->outbox(since => 6) }, 3, '... in the outbox');

$wa->auto_status(url => "$LURL/statuses", app_secret => $SECRET,
                 statuses => ['failed'], delay => 1,
                 error => { code => 131047, title => 'Re-engagement message' });
wa_send($text);
$in = listened($L, 9)->[8] // { body => '{}' };
my $f = $JSON->decode($in->{body})->{entry}[0]{changes}[0]{value}{statuses}[0];
ok($f->{status} eq 'failed' && $f->{errors}[0]{code} == 131047
   && $f->{errors}[0]{title} eq 'Re-engagement message',
   'auto-status failed: with its error') or diag($in->{body});
$wa->force({ status => 500 });
wa_send($text);
$wa->auto_status;
wa_send($text);
sleep 0.1;
is(scalar @{ listened($L) }, 9,
   'no auto-status for a forced answer, nor once turned off');


# --- reset
$wa->reset;
ok(!@{ $wa->calls } && !@{ $wa->outbox } && !@{ $wa->pending },
   'reset: no calls, outbox or forced answers');
is(wa_send($text)->{status}, 401, '... and no tokens');


# --- payload builders
my %who = (phone_number_id => 'P1', display_phone_number => '15550001111',
           waba_id => 'W1', wa_id => '4915112345678', name => 'Ana',
           wamid => 'wamid.T', timestamp => 1700000000);
my $p = wa_text(%who, body => 'hi');
is_deeply($p, { object => 'whatsapp_business_account', entry => [ {
    id => 'W1', changes => [ { field => 'messages', value => {
        messaging_product => 'whatsapp',
        metadata => { display_phone_number => '15550001111',
                      phone_number_id => 'P1' },
        contacts => [ { profile => { name => 'Ana' },
                        wa_id => '4915112345678' } ],
        messages => [ { from => '4915112345678', id => 'wamid.T',
                        timestamp => '1700000000', type => 'text',
                        text => { body => 'hi' } } ] } } ] } ] },
    'wa_text: the whole payload');
like($JSON->encode($p), qr/"timestamp":"1700000000"/,
     '... the timestamp a JSON string');

sub msg { return $_[0]{entry}[0]{changes}[0]{value}{messages}[0] }
my %head = (from => '4915112345678', id => 'wamid.T',
            timestamp => '1700000000');
is_deeply(msg(wa_media(%who, type => 'image', id => 'M1',
                       mime_type => 'image/jpeg', sha256 => 'abc',
                       caption => 'cap')),
          { %head, type => 'image', image => { id => 'M1',
            mime_type => 'image/jpeg', sha256 => 'abc', caption => 'cap' } },
          'wa_media image');
is_deeply(msg(wa_media(%who, type => 'document', id => 'M2',
                       mime_type => 'application/pdf', sha256 => 'def',
                       filename => 'a.pdf')),
          { %head, type => 'document', document => { id => 'M2',
            mime_type => 'application/pdf', sha256 => 'def',
            filename => 'a.pdf' } }, 'wa_media document, filename');
for my $type (qw(video audio sticker)) {
    my $m = msg(wa_media(%who, type => $type, id => 'M3'));
    ok($m->{type} eq $type && $m->{$type}{id} eq 'M3'
       && $m->{$type}{mime_type} && $m->{$type}{sha256}
       && keys %{ $m->{$type} } == 3, "wa_media $type");
}
is_deeply(msg(wa_location(%who, latitude => 52.52, longitude => 13.4,
                          name => 'Mitte', address => 'Berlin')),
          { %head, type => 'location', location => { latitude => 52.52,
            longitude => 13.4, name => 'Mitte', address => 'Berlin' } },
          'wa_location');
my $m = msg(wa_contacts(%who));
ok($m->{type} eq 'contacts' && $m->{contacts}[0]{name}{formatted_name}
   && $m->{contacts}[0]{phones}[0]{phone}, 'wa_contacts');
is_deeply(msg(wa_button_reply(%who, id => 'b1', title => 'Yes')),
          { %head, type => 'interactive', interactive => {
            type => 'button_reply',
            button_reply => { id => 'b1', title => 'Yes' } } },
          'wa_button_reply');
is_deeply(msg(wa_list_reply(%who, id => 'r1', title => 'One',
                            description => 'The first')),
          { %head, type => 'interactive', interactive => {
            type => 'list_reply', list_reply => { id => 'r1',
            title => 'One', description => 'The first' } } },
          'wa_list_reply');
is_deeply(msg(wa_button(%who, payload => 'STOP', text => 'Stop',
                        reply_to => 'wamid.Q')),
          { %head, type => 'button', button => { payload => 'STOP',
            text => 'Stop' },
            context => { from => '15550001111', id => 'wamid.Q' } },
          'wa_button, a reply to a template');
is_deeply(msg(wa_reaction(%who, message_id => 'wamid.R', emoji => 'ok')),
          { %head, type => 'reaction', reaction => {
            message_id => 'wamid.R', emoji => 'ok' } }, 'wa_reaction');
is_deeply(msg(wa_text(%who, body => 're', context => {
              from => '4915112345678', id => 'wamid.Own' }))->{context},
          { from => '4915112345678', id => 'wamid.Own' },
          'a reply: context as given');
ok(msg(wa_text(wa_id => '1'))->{id} ne msg(wa_text(wa_id => '1'))->{id},
   'a wamid of its own by default');

my $sv = wa_status(%who, status => 'read')->{entry}[0]{changes}[0]{value};
is_deeply($sv, { messaging_product => 'whatsapp',
                 metadata => { display_phone_number => '15550001111',
                               phone_number_id => 'P1' },
                 statuses => [ { id => 'wamid.T', status => 'read',
                                 timestamp => '1700000000',
                                 recipient_id => '4915112345678' } ] },
          'wa_status read: the whole value');
my $ss = wa_status(%who, status => 'sent')
    ->{entry}[0]{changes}[0]{value}{statuses}[0];
ok($ss->{conversation}{id} && $ss->{conversation}{origin}{type} eq 'service'
   && $ss->{conversation}{expiration_timestamp} eq '1700086400'
   && $ss->{pricing}{billable} && $ss->{pricing}{pricing_model} eq 'CBP',
   'wa_status sent: conversation and pricing');
my $fs = wa_status(%who, status => 'failed', errors => [
    { code => 131047, title => 'Re-engagement message' } ])
    ->{entry}[0]{changes}[0]{value}{statuses}[0];
is_deeply($fs->{errors}, [ { code => 131047, title => 'Re-engagement message',
    message => 'Re-engagement message',
    error_data => { details => 'Re-engagement message' } } ],
    'wa_status failed: its errors');

my $all = wa_combine(wa_text(%who, wamid => 'wamid.1'),
                     wa_text(%who, wamid => 'wamid.2'),
                     wa_text(%who, wa_id => '4400', name => 'Bo',
                             wamid => 'wamid.3'),
                     wa_status(%who, status => 'read'));
my $cv = $all->{entry}[0]{changes}[0]{value};
ok(@{ $all->{entry} } == 1 && @{ $all->{entry}[0]{changes} } == 1,
   'wa_combine: one entry, one change');
is_deeply([ map { $_->{id} } @{ $cv->{messages} } ],
          [qw(wamid.1 wamid.2 wamid.3)], '... all messages');
is_deeply([ map { $_->{wa_id} } @{ $cv->{contacts} } ],
          [qw(4915112345678 4400)], '... each sender once');
is(scalar @{ $cv->{statuses} }, 1, '... and the status');
my $two = wa_changes(wa_text(%who), wa_status(%who));
ok(@{ $two->{entry} } == 1 && @{ $two->{entry}[0]{changes} } == 2,
   'wa_changes: one entry, two changes');
$two = wa_entries(wa_text(%who), wa_text(%who, waba_id => 'W2'));
is_deeply([ map { $_->{id} } @{ $two->{entry} } ], [qw(W1 W2)],
          'wa_entries: two entries');


# --- the API channel's peer
my $PS = "peer-secret-$$";
is($peer->secret($PS), $PS, 'api-peer: secret set');
my $out = { event => 'message', id => 'a4f1c2d8-1111-4b6e-9c1a-000000000001',
            conversationId => 'c0ffee00-2222-4b6e-9c1a-000000000002',
            to => { id => 'user-42', phone => '+4915112345678' },
            type => 'text', content => { text => "hi \x{2603}" },
            replyTo => 'peer-0', timestamp => 1700000000 };

sub deliver {
    my ($body, %o) = @_;
    my $raw = ref $body ? $JSON->encode($body) : $body;
    my %h = ('X-Orbit-Delivery' => exists $o{delivery} ? $o{delivery}
                                                       : $body->{id});
    my $sig = exists $o{signature} ? $o{signature}
            : hub_signature($o{secret} // $PS, $raw);
    $h{'X-Hub-Signature-256'} = $sig if defined $sig;
    delete $h{'X-Orbit-Delivery'} unless defined $h{'X-Orbit-Delivery'};
    return http_req(POST => $peer->url . '/hooks/orbit', raw => $raw,
                    headers => \%h, timeout => $o{timeout});
}

$r = deliver($out);
is($r->{status}, 200, 'a signed delivery: 200');
my $pid1 = $r->{json}{id} // '';
ok(keys %{ $r->{json} } == 1 && $pid1 =~ /^peer-/, '... {"id":PEER_ID}');
$r2 = deliver($out);
ok($r2->{status} == 200 && $r2->{content} eq $r->{content},
   'the same X-Orbit-Delivery again: the same answer');
my @pc = @{ $peer->calls };
is_deeply([ map { $_->{outcome} } @pc ], [qw(accepted duplicate)],
          '... recorded as a duplicate, not a new delivery');
ok($pc[0]{peerId} eq $pid1 && $pc[1]{duplicateOf} == 0
   && $pc[0]{delivery} eq $out->{id}, '... of the first');
my $out2 = { %$out, id => 'a4f1c2d8-1111-4b6e-9c1a-000000000003' };
$r = deliver($out2);
ok($r->{status} == 200 && $r->{json}{id} ne $pid1,
   'another delivery: another peer id');

for my $case (['a wrong signature', signature => 'sha256=' . '0' x 64],
              ['no signature', signature => undef],
              ['signed with another secret', secret => 'nope'],
              ['the signature of another body',
               signature => hub_signature($PS, '{}')]) {
    my ($name, @o) = @$case;
    my $x = { %$out, id => "bad-$name" };
    $r = deliver($x, @o);
    ok($r->{status} == 403 && $r->{json}{error} eq 'invalid signature',
       "$name: 403") or diag("$r->{status} $r->{content}");
}
is(scalar @{ $peer->calls(outcome => 'rejected') }, 4,
   '... recorded as rejected');
is(deliver({ %$out, id => 'bad-no signature' })->{status}, 200,
   '... and not remembered: signed, the same id is a new delivery');

my $out3 = { %$out, id => 'a4f1c2d8-1111-4b6e-9c1a-000000000004' };
for my $case (
    ['no X-Orbit-Delivery', $out3, delivery => undef],
    ['X-Orbit-Delivery not the id', $out3, delivery => 'other'],
    ['not JSON', '{"event":'],
    ['type "fax"', { %$out3, type => 'fax' }],
    ['an unknown key', { %$out3, tenantId => 'x' }],
    ['an empty text', { %$out3, content => { text => '' } }],
    ['a phone not E.164', { %$out3, to => { id => 'u', phone => '0151' } }],
    ['image content without url', { %$out3, type => 'image',
                                     content => { mimeType => 'image/png' } }],
    ['a timestamp as a string', { %$out3, timestamp => '1700000000' }]) {
    my ($name, $body, @o) = @$case;
    $r = deliver($body, delivery => $out3->{id}, @o);
    ok($r->{status} == 400 && $r->{json}{error},
       "api-peer, $name: 400") or diag("$r->{status} $r->{content}");
}
for my $case (
    ['image', { url => 'https://e.com/a.png', mimeType => 'image/png',
                caption => 'c' }],
    ['document', { url => 'https://e.com/a.pdf', filename => 'a.pdf' }],
    ['location', { latitude => 52.5, longitude => 13.4, name => 'M' }],
    ['template', { name => 'hello', language => 'en_US',
                   parameters => ['Ana'] }]) {
    my ($type, $content) = @$case;
    $r = deliver({ %$out, id => "ok-$type", type => $type,
                   content => $content });
    is($r->{status}, 200, "api-peer, a $type message: 200")
        or diag($r->{content});
}

my $out4 = { %$out, id => 'a4f1c2d8-1111-4b6e-9c1a-000000000005' };
$peer->force({ status => 503 }, { hang => 1 }, { close => 1 });
is(deliver($out4)->{status}, 503, 'api-peer, forced: 503');
$r = deliver($out4, timeout => 0.3);
ok($r->{status} == 599 && $r->{seconds} < 1.5, '... then a hang');
is(deliver($out4)->{status}, 599, '... then a dropped connection');
$r = deliver($out4);
ok($r->{status} == 200 && $peer->calls->[-1]{outcome} eq 'accepted',
   '... then the same delivery is accepted: failures are not remembered');

my $inbound = {
    messages => [
        { id => 'pm-1', from => { id => 'user-42', phone => '+4915112345678',
                                  name => 'Ana' },
          timestamp => 1700000000, type => 'text', text => "hello \x{2603}" },
        { id => 'pm-2', from => { id => 'user-42' }, timestamp => 1700000001,
          type => 'image', replyTo => 'pm-1',
          media => { url => 'https://e.com/a.jpg', mimeType => 'image/jpeg',
                     caption => 'look' } },
        { id => 'pm-3', from => { id => 'user-42' }, timestamp => 1700000002,
          type => 'location', location => { latitude => 52.5,
                                            longitude => 13.4 } } ],
    statuses => [ { id => $pid1, status => 'failed', timestamp => 1700000003,
                    error => { code => 'blocked', title => 'User blocked' } } ],
};
$r = $peer->emit(url => "$LURL/webhooks/api/1", secret => $PS,
                 payload => $inbound);
is($r->{status}, 202, 'api-peer emit: the target\'s status');
$in = listened($L, 10)->[9] // {};
is($in->{path}, '/webhooks/api/1', '... to the url');
is($in->{headers}{'x-hub-signature-256'},
   'sha256=' . hmac_sha256_hex($in->{body}, $PS),
   '... signed: Digest::SHA computes the same');
is_deeply($JSON->decode($in->{body}), $inbound, '... the body');

$r = $wa->emit(url => $peer->url . '/hooks/orbit', secret => $PS,
               payload => { %$out, id => 'cross-1' },
               headers => { 'X-Orbit-Delivery' => 'cross-1' });
ok($r->{status} == 200 && $r->{json}{id} =~ /^peer-/,
   'the whatsapp fake\'s emit, extra headers, at the peer: accepted')
    or diag(explain($r));


# --- the end: stopped, also when a test dies
my $child = do {
    open my $fh, '-|', $^X, "-I$LIB", '-MOrbit::Fake', '-e',
        q{$| = 1; open STDERR, '>', '/dev/null';
          my $f = Orbit::Fake->start('api-peer');
          print $f->pid, "\n"; die "on purpose"}
        or die "perl: $!";
    my $pid = <$fh>;
    close $fh;
    chomp $pid if defined $pid;
    $pid;
};
ok($child && wait_until(5, sub { gone($child) }),
   'a test that dies: its fake is stopped');

for my $fake ($wa, $peer) {
    my $pid = $fake->pid;
    my $st = $fake->stop;
    ok(gone($pid), "$fake->{kind}: stopped");
    is($st->{stderr}, '', '... nothing on its stderr');
}

done_testing();
