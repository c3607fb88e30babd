# /api/v1/channels: a tenant's channel connections.  Create, read, list
# (keyset pages, ?channel=), update, delete; credentials sealed in C
# (AES-256-GCM, bound to the row) and masked in every answer; the one-time
# secret of an "api" channel; (channel, accountId) unique across tenants;
# roles, API keys and other tenants refused; bad input refused whole; a box
# copied into another row does not open (orbit_channel_creds_open(), as
# the sending code will call it, through the test module).

use strict;
use warnings;
use Test::More;
use JSON::PP ();
use Orbit::Test;

my $BULLETS = "\xe2\x80\xa2" x 4;          # "••••", as UTF-8 bytes

my $t = orbit_nginx(
    workers => 2, pool => 4,
    api_config => 'client_max_body_size 1m;',
    config => "location = /t/creds {\n"
            . "    orbit_test_channel_creds \$arg_box \$arg_tenant \$arg_id;\n"
            . "}\n");
$t->start;

my ($root_email, $root_pw) = make_superadmin();
my $root = login($t, $root_email, $root_pw);

# an approved tenant: (admin session, tenant id)
sub tenant {
    my ($name) = @_;
    my $slug = uniq($name);
    my $email = "$slug\@$name.test";
    my $r = api($t, 'POST', '/api/v1/auth/register', body => {
        tenantName => "T $slug", slug => $slug, name => 'Admin',
        email => $email, password => 'correct horse battery' });
    die "register: $r->{status} $r->{body}" unless $r->{status} == 201;
    my $id = $r->{json}{tenant}{id};
    $r = api($t, 'PATCH', "/api/v1/tenants/$id",
             body => { status => 'active' }, token => $root->{accessToken});
    die "approve: $r->{status} $r->{body}" unless $r->{status} == 200;
    return (login($t, $email, 'correct horse battery'), $id);
}

sub member {
    my ($admin, $role) = @_;
    my $email = uniq(lc $role) . '@chan.test';
    my $r = api($t, 'POST', '/api/v1/users', token => $admin->{accessToken},
                body => { email => $email, name => $role, role => $role,
                          password => 'member-password' });
    die "invite: $r->{status} $r->{body}" unless $r->{status} == 201;
    return login($t, $email, 'member-password')->{accessToken};
}

# every plaintext secret sent or received: no answer but the one-time
# secret's may show one, and neither the database nor the logs
my @SECRETS;
sub secret_value {
    my ($tag) = @_;
    my $s = "SeCrEt-$tag-" . uniq('v') . '-Zq9x';
    push @SECRETS, $s;
    return $s;
}

sub shows_secret {
    my ($body, @except) = @_;
    my %skip = map { $_ => 1 } @except;
    return grep { !$skip{$_} && index($body // '', $_) >= 0 } @SECRETS;
}

# the hint of a value: its last 4 characters from 12 characters on
sub hint_of {
    my ($v) = @_;
    return $BULLETS . ((length $v >= 12) ? substr($v, -4) : '');
}

sub urlenc {
    my ($s) = @_;
    $s =~ s/([^A-Za-z0-9_.~-])/sprintf '%%%02X', ord $1/ge;
    return $s;
}

# the row's box opened by orbit_channel_creds_open(): (status, body)
sub open_box {
    my ($box, $tenant, $id) = @_;
    my $r = $t->http_get('/t/creds?box=' . urlenc($box) . '&tenant='
                         . urlenc($tenant) . '&id=' . urlenc($id));
    return ($r->{status}, $r->{body});
}

sub box_of {
    my ($id) = @_;
    return psql("SELECT credentials FROM channel_connections"
                . " WHERE id = '$id'");
}

sub rows {
    return psql('SELECT count(*) FROM channel_connections');
}

my ($admin, $tid) = tenant('chan');
my ($other, $other_tid) = tenant('rival');
my $A = $admin->{accessToken};
my $B = $other->{accessToken};
my $manager = member($admin, 'MANAGER');
my $agent = member($admin, 'AGENT');

my @ANSWERS;                # every answer that must show no plaintext
sub call {
    my $r = api(@_);
    push @ANSWERS, $r;
    return $r;
}

# --- create: masked, sealed, bound to the row
my $wa_account = 'pn-' . uniq();
my $token = secret_value('token');
my $app_secret = secret_value('app');
my %wa_creds = (accessToken => $token, appSecret => $app_secret,
                pin => 'abcd', longish => 'exactly12chr', short11 => 'elevenchars');
push @SECRETS, 'exactly12chr', 'elevenchars';

my $r = call($t, 'POST', '/api/v1/channels', token => $A, body => {
    channel => 'whatsapp', name => 'Support line', accountId => $wa_account,
    config => { phoneNumber => '+15550001111', webhookVerify => JSON::PP::true,
                nested => { a => [1, 2] } },
    credentials => \%wa_creds });
is($r->{status}, 201, 'create: 201') or diag($r->{body});
my $wa = $r->{json};
is_deeply([ sort keys %$wa ], [qw(accountId channel config createdAt
    credentials id name setup status updatedAt)], 'the answer\'s fields');
is_deeply($wa->{setup}, { status => 'pending' },
          'its setup with the provider is pending');
is($wa->{channel}, 'whatsapp', 'channel');
is($wa->{accountId}, $wa_account, 'accountId');
is($wa->{status}, 'active', 'active by default');
is_deeply($wa->{config}, { phoneNumber => '+15550001111',
    webhookVerify => JSON::PP::true, nested => { a => [1, 2] } },
    'config as given');
is_deeply($wa->{credentials}, { map { $_ => hint_of($wa_creds{$_}) }
                                keys %wa_creds },
          'credentials: the same keys, masked');
is($wa->{credentials}{accessToken}, $BULLETS . substr($token, -4),
   'a long value shows its last 4 characters');
is($wa->{credentials}{pin}, $BULLETS, 'a 4-character value: fully masked');
is($wa->{credentials}{short11}, $BULLETS,
   'an 11-character value: fully masked');
is($wa->{credentials}{longish}, $BULLETS . '2chr',
   'from 12 characters on: the last 4');
ok(!exists $wa->{secret}, 'no one-time secret for a whatsapp channel');

# the database holds a box and masks, never a plaintext value
is(psql("SELECT get_byte(credentials, 0) FROM channel_connections"
        . " WHERE id = '$wa->{id}'"), '1', 'the box starts with version 1');
my $plain_len = length JSON::PP->new->canonical->encode(\%wa_creds);
is(psql("SELECT length(credentials) FROM channel_connections"
        . " WHERE id = '$wa->{id}'"), $plain_len + 29,
   'the box: 1 + 12 + the JSON + 16 bytes');
for my $s ($token, $app_secret, 'exactly12chr') {
    is(psql("SELECT count(*) FROM channel_connections WHERE"
            . " position(convert_to('$s', 'UTF8') in credentials) > 0"
            . " OR credentials::text LIKE '%' || encode(convert_to('$s',"
            . " 'UTF8'), 'hex') || '%'"
            . " OR row_to_json(channel_connections)::text LIKE '%$s%'"),
       '0', "no row holds \"$s\" in the clear (bytes, hex or text)");
}
is(psql("SELECT count(*) FROM channel_connections c,"
        . " jsonb_each_text(c.credentials_hint) h"
        . " WHERE c.id = '$wa->{id}' AND h.value !~ '^\\u2022{4}.{0,4}\$'"),
   '0', 'credentials_hint holds masked values only');

# the box opens, as the sending code opens it, to exactly what was sent
my $box = box_of($wa->{id});
like($box, qr/^\\x01[0-9a-f]+$/, 'the column in text form: \\x01...');
my ($st, $body) = open_box($box, $tid, $wa->{id});
is($st, 200, 'orbit_channel_creds_open() opens it');
is_deeply(eval { JSON::PP->new->decode($body) }, \%wa_creds,
          '... to the credentials sent');

# --- the one-time secret of an "api" channel, its generated account
$r = call($t, 'POST', '/api/v1/channels', token => $A,
          body => { channel => 'api', name => 'Zapier' });
is($r->{status}, 201, 'an api channel without credentials: 201');
my $api = $r->{json};
like($api->{secret} // '', qr/^[A-Za-z0-9_-]{43}$/,
     'a secret made by the server, shown once');
push @SECRETS, $api->{secret} if $api->{secret};
like($api->{accountId}, qr/^api_[A-Za-z0-9_-]{24}$/,
     'an accountId made by the server');
is_deeply($api->{credentials}, { secret => hint_of($api->{secret} // '') },
          'its credentials show the secret masked');
($st, $body) = open_box(box_of($api->{id}), $tid, $api->{id});
is_deeply(eval { JSON::PP->new->decode($body) }, { secret => $api->{secret} },
          'the box holds that secret');

$r = call($t, 'GET', "/api/v1/channels/$api->{id}", token => $A);
is($r->{status}, 200, 'read it back');
ok(!exists $r->{json}{secret} && index($r->{body}, $api->{secret}) < 0,
   '... never the secret again');
$r = call($t, 'GET', '/api/v1/channels', token => $A);
ok(index($r->{body}, $api->{secret}) < 0, '... nor in the list');

my $own = secret_value('own');
$r = call($t, 'POST', '/api/v1/channels', token => $A, body => {
    channel => 'api', name => 'Own secret', credentials => { secret => $own,
    extra => 'x' x 20 } });
is($r->{status}, 201, 'an api channel with its own secret: 201');
ok(!exists $r->{json}{secret}, '... no secret made, none shown');
my $api_own = $r->{json};

$r = call($t, 'POST', '/api/v1/channels', token => $A,
          body => { channel => 'livechat', name => 'Widget' });
is($r->{status}, 201, 'a livechat channel without accountId: 201');
like($r->{json}{accountId}, qr/^lc_[A-Za-z0-9_-]{24}$/, '... lc_ and a token');
ok(!exists $r->{json}{secret}, '... and no secret');
is(psql("SELECT credentials IS NULL FROM channel_connections"
        . " WHERE id = '$r->{json}{id}'"), 't',
   'no credentials given: no box');
is_deeply($r->{json}{credentials}, {}, '... and an empty hint');
($st, $body) = open_box('', $tid, $r->{json}{id});
is("$st $body", '200 {}', 'a NULL column opens to an empty object');

# --- (channel, accountId) is unique across tenants
$r = call($t, 'POST', '/api/v1/channels', token => $B, body => {
    channel => 'whatsapp', name => 'Mine', accountId => $wa_account,
    credentials => { accessToken => secret_value('dup') } });
is($r->{status}, 409, "another tenant's accountId on the same channel: 409");
is($r->{json}{message}, 'accountId is already connected on this channel',
   '... says why');
$r = call($t, 'POST', '/api/v1/channels', token => $A, body => {
    channel => 'whatsapp', name => 'Again', accountId => $wa_account });
is($r->{status}, 409, '... and in the same tenant');
$r = call($t, 'POST', '/api/v1/channels', token => $B, body => {
    channel => 'telegram', name => 'Bot', accountId => $wa_account,
    credentials => { botToken => secret_value('bot') } });
is($r->{status}, 201, 'the same accountId on another channel is fine');
my $b_bot = $r->{json};

# --- a box moved into another row does not open
my $a_box = box_of($wa->{id});
my $b_before = box_of($b_bot->{id});
psql("UPDATE channel_connections SET credentials = (SELECT credentials"
     . " FROM channel_connections WHERE id = '$wa->{id}')"
     . " WHERE id = '$b_bot->{id}'");
is(box_of($b_bot->{id}), $a_box, "A's box copied into B's row with SQL");
($st) = open_box($a_box, $other_tid, $b_bot->{id});
is($st, 422, "in B's row it does not open");
($st) = open_box($a_box, $tid, $b_bot->{id});
is($st, 422, "... nor with A's tenant and B's row id");
($st) = open_box($a_box, $other_tid, $wa->{id});
is($st, 422, "... nor with B's tenant and A's row id");
($st) = open_box($a_box, $tid, $api->{id});
is($st, 422, "... nor in another row of A");
(my $tampered = $a_box) =~ s/(..)$/sprintf '%02x', hex($1) ^ 1/e;
($st) = open_box($tampered, $tid, $wa->{id});
is($st, 422, 'a flipped bit: does not open');
($st) = open_box($a_box, $tid, $wa->{id});
is($st, 200, 'in its own row it still opens');
my $refusal = "credentials of channel connection $b_bot->{id}: the box"
            . ' does not open';
like($t->error_log, qr/\[error\].*\Q$refusal\E/,
     'the refusal is logged at error, naming the connection');
psql("UPDATE channel_connections SET credentials = '$b_before'"
     . " WHERE id = '$b_bot->{id}'");

# --- the channel.setup job: WhatsApp has nothing to register, so ok
ok(wait_until(10, sub {
    call($t, 'GET', "/api/v1/channels/$wa->{id}", token => $A)
        ->{json}{setup}{status} eq 'ok' }),
   'its setup job ran: ok (WhatsApp registers nothing)');
is(psql("SELECT count(*) FROM jobs WHERE kind = 'channel.setup'"
        . " AND payload->>'connectionId' = '$wa->{id}'"), 1,
   '... one channel.setup job for it');
$r = call($t, 'GET', "/api/v1/channels/$wa->{id}", token => $A);
$wa->{setup} = $r->{json}{setup};

# --- read and list: staff only, masked
$r = call($t, 'GET', "/api/v1/channels/$wa->{id}", token => $A);
is($r->{status}, 200, 'admin reads');
is_deeply($r->{json}, $wa, '... the same connection');
$r = call($t, 'GET', "/api/v1/channels/$wa->{id}", token => $manager);
is($r->{status}, 200, 'a manager reads');
is_deeply($r->{json}{credentials}, $wa->{credentials}, '... masked too');
$r = call($t, 'GET', '/api/v1/channels', token => $manager);
is($r->{status}, 200, 'a manager lists');
my ($listed) = grep { $_->{id} eq $wa->{id} } @{ $r->{json}{data} };
is_deeply($listed, $wa, '... the connection as created, masked');

for my $req (['GET', '/api/v1/channels'], ['GET', "/api/v1/channels/$wa->{id}"],
             ['POST', '/api/v1/channels', { channel => 'sms', name => 'x',
                                            accountId => '+15550002222' }],
             ['PATCH', "/api/v1/channels/$wa->{id}", { name => 'x' }],
             ['DELETE', "/api/v1/channels/$wa->{id}"]) {
    my ($m, $p, $b) = @$req;
    $r = call($t, $m, $p, token => $agent, ($b ? (body => $b) : ()));
    is($r->{status}, 403, "an agent: $m $p: 403");
    next if $m eq 'GET';
    $r = call($t, $m, $p, token => $manager, ($b ? (body => $b) : ()));
    is($r->{status}, 403, "a manager: $m $p: 403");
}
$r = call($t, 'GET', '/api/v1/channels', token => $root->{accessToken});
is($r->{status}, 403, 'a superadmin (no tenant): 403');
$r = call($t, 'GET', '/api/v1/channels');
is($r->{status}, 401, 'nobody: 401');

# API keys, whatever their scopes, may not
$r = api($t, 'POST', '/api/v1/api-keys', token => $A, body => {
    name => 'all', scopes => [qw(contacts:read contacts:write
    conversations:read messages:read messages:send flows:read flows:trigger
    templates:read)] });
my $key = $r->{json}{key};
for my $req (['GET', '/api/v1/channels'], ['GET', "/api/v1/channels/$wa->{id}"],
             ['POST', '/api/v1/channels', { channel => 'sms', name => 'x',
                                            accountId => '+15550003333' }],
             ['PATCH', "/api/v1/channels/$wa->{id}", { name => 'x' }],
             ['DELETE', "/api/v1/channels/$wa->{id}"]) {
    my ($m, $p, $b) = @$req;
    $r = call($t, $m, $p, headers => { 'X-Api-Key' => $key },
              ($b ? (body => $b) : ()));
    is($r->{status}, 403, "an all-scopes API key: $m $p: 403");
}
is($r->{json}{message}, 'API keys cannot access this resource', '... and why');
$r = call($t, 'GET', '/api/v1/channels',
          headers => { 'X-Api-Key' => 'wcrm_' . ('A' x 43) });
is($r->{status}, 401, 'an unknown API key: 401');

# --- another tenant's connection does not exist for us
my $state = psql("SELECT name, status, config::text, credentials::text,"
                 . " credentials_hint::text FROM channel_connections"
                 . " WHERE id = '$wa->{id}'");
for my $req (['GET'], ['PATCH', { name => 'pwned', status => 'disabled',
                                  credentials => { accessToken => 'x' } }],
             ['DELETE']) {
    my ($m, $b) = @$req;
    $r = call($t, $m, "/api/v1/channels/$wa->{id}", token => $B,
              ($b ? (body => $b) : ()));
    is($r->{status}, 404, "another tenant's admin: $m: 404");
    is($r->{json}{message}, 'Channel connection not found', '... not found');
}
is(psql("SELECT name, status, config::text, credentials::text,"
        . " credentials_hint::text FROM channel_connections"
        . " WHERE id = '$wa->{id}'"), $state, '... and the row is unchanged');
$r = call($t, 'GET', '/api/v1/channels', token => $B);
is_deeply([ map { $_->{id} } @{ $r->{json}{data} } ], [ $b_bot->{id} ],
          "B's list holds B's connection only");

for my $m ('GET', 'PATCH', 'DELETE') {
    $r = call($t, $m, '/api/v1/channels/not-a-uuid', token => $A,
              ($m eq 'PATCH' ? (body => { name => 'x' }) : ()));
    is($r->{status}, 400, "$m a malformed id: 400");
}
is($r->{json}{message}, 'Validation failed (uuid is expected)', '... why');

# --- bad input: refused whole, nothing written
my $n = rows();
my %base = (channel => 'sms', name => 'SMS', accountId => uniq('sms'));
my %bad = (
    'malformed JSON' => [ raw => '{"channel":"sms",', qr/Invalid JSON/ ],
    'an array body' => [ raw => '[1]', qr/the body must be a JSON object/ ],
    'no body' => [ raw => '', qr/channel should not be empty/ ],
    'unknown channel' => [ body => { %base, channel => 'fax' },
                           qr/channel must be one of the allowed values/ ],
    'unknown field' => [ body => { %base, tenantId => $other_tid },
                         qr/property tenantId should not exist/ ],
    'status on create' => [ body => { %base, status => 'active' },
                            qr/property status should not exist/ ],
    'name a number' => [ body => { %base, name => 5 },
                         qr/name must be a string/ ],
    'empty name' => [ body => { %base, name => '' },
                      qr/name should not be empty/ ],
    'long name' => [ body => { %base, name => 'n' x 101 },
                     qr/name must be shorter than or equal to 100/ ],
    'no accountId' => [ body => { channel => 'sms', name => 'x' },
                        qr/accountId should not be empty/ ],
    'long accountId' => [ body => { %base, accountId => 'a' x 201 },
                          qr/accountId must be 1 to 200 characters/ ],
    'accountId with a newline' => [ body => { %base, accountId => "a\nb" },
                                    qr/accountId must be 1 to 200/ ],
    'config a string' => [ body => { %base, config => 'x' },
                           qr/config must be an object/ ],
    'config too big' => [ body => { %base, config => { a => 'x' x 17000 } },
                          qr/config must be at most 16384 bytes/ ],
    'credentials an array' => [ body => { %base, credentials => ['x'] },
                                qr/credentials must be an object/ ],
    'credentials a number' => [ body => { %base, credentials => { a => 1 } },
        qr/each value in credentials must be a string/ ],
    'credentials nested' => [ body => { %base,
                                        credentials => { a => { b => 'c' } } },
        qr/each value in credentials must be a string/ ],
    'credentials null' => [ body => { %base, credentials => { a => undef } },
        qr/each value in credentials must be a string/ ],
    'credentials too long' => [ body => { %base,
                                          credentials => { a => 'x' x 4097 } },
        qr/each value in credentials must be 1 to 4096 characters/ ],
    'credentials empty value' => [ body => { %base, credentials => { a => '' } },
        qr/each value in credentials must be 1 to 4096 characters/ ],
    'credentials bad key' => [ body => { %base,
                                         credentials => { 'a b' => 'x' } },
        qr/credentials keys must be 1 to 64 letters/ ],
    'credentials 21 keys' => [ body => { %base, credentials =>
                                 { map { ("k$_" => 'v') } 1 .. 21 } },
        qr/credentials must have at most 20 keys/ ],
    'everything wrong' => [ body => { channel => 1, name => [], bogus => 1 },
        qr/property bogus should not exist.*channel must be a string.*name must be a string/ ],
);
for my $case (sort keys %bad) {
    my ($kind, $payload, $re) = @{ $bad{$case} };
    $r = call($t, 'POST', '/api/v1/channels', $kind => $payload, token => $A);
    is($r->{status}, 400, "create, $case: 400");
    like(json_of($r->{json}{message}), $re, "create, $case: says why");
}
$r = call($t, 'POST', '/api/v1/channels', token => $A, body => { %base,
    credentials => { a => "\xc3\xa9" x 4096 } });
is($r->{status}, 201, 'a credential of 4096 two-byte characters is fine');
is($r->{json}{credentials}{a}, $BULLETS . ("\xc3\xa9" x 4),
   '... masked by characters');
$n++;
$r = call($t, 'POST', '/api/v1/channels', token => $A,
          raw => '{"channel":"sms","name":"' . ('x' x (2 * 1024 * 1024))
               . '"}');
is($r->{status}, 413, 'a 2 MB body: 413');
is($r->{json}{statusCode}, 413, '... in the JSON error shape');
is(rows(), $n, 'nothing of the refused creates was written');

for my $case ([ { channel => 'sms' }, qr/property channel should not exist/ ],
              [ { accountId => 'x' }, qr/property accountId should not exist/ ],
              [ { status => 'paused' }, qr/status must be one of the allowed/ ],
              [ { name => '' }, qr/name should not be empty|name must be longer/ ],
              [ { credentials => { a => 2 } },
                qr/each value in credentials must be a string/ ],
              [ { config => [] }, qr/config must be an object/ ]) {
    my ($b, $re) = @$case;
    $r = call($t, 'PATCH', "/api/v1/channels/$wa->{id}", token => $A,
              body => $b);
    is($r->{status}, 400, 'update, ' . json_of($b) . ': 400');
    like(json_of($r->{json}{message}), $re, '... says why');
}
$r = call($t, 'PATCH', "/api/v1/channels/$wa->{id}", token => $A,
          raw => '{"name":');
is($r->{status}, 400, 'update, malformed JSON: 400');
is(psql("SELECT name, status, config::text, credentials::text,"
        . " credentials_hint::text FROM channel_connections"
        . " WHERE id = '$wa->{id}'"), $state, 'the row is unchanged');

for my $q ('channel=fax', 'limit=0', 'limit=101', 'cursor=nope') {
    $r = call($t, 'GET', "/api/v1/channels?$q", token => $A);
    is($r->{status}, 400, "list ?$q: 400");
}

# --- update: fields, status, credentials replaced whole
$r = call($t, 'PATCH', "/api/v1/channels/$wa->{id}", token => $A, body => {
    name => 'Renamed', config => { only => 'this' }, status => 'disabled' });
is($r->{status}, 200, 'update name, config, status: 200');
is($r->{json}{name}, 'Renamed', 'name');
is_deeply($r->{json}{config}, { only => 'this' }, 'config replaced whole');
is($r->{json}{status}, 'disabled', 'disabled');
is_deeply($r->{json}{credentials}, $wa->{credentials},
          'credentials untouched: the same hint');
is(box_of($wa->{id}), $a_box, '... and the same box');
ok(!exists $r->{json}{secret}, 'no secret');

my $new_token = secret_value('rotated');
$r = call($t, 'PATCH', "/api/v1/channels/$wa->{id}", token => $A,
          body => { credentials => { accessToken => $new_token } });
is($r->{status}, 200, 'update credentials: 200');
is_deeply($r->{json}{credentials}, { accessToken => hint_of($new_token) },
          'the hint: the new keys only');
is($r->{json}{name}, 'Renamed', '... the rest kept');
my $new_box = box_of($wa->{id});
isnt($new_box, $a_box, 'a new box');
($st, $body) = open_box($new_box, $tid, $wa->{id});
is_deeply(eval { JSON::PP->new->decode($body) },
          { accessToken => $new_token }, '... holding the new credentials');
ok(index($body, $token) < 0 && index($body, $app_secret) < 0,
   '... and none of the old');
is(psql("SELECT count(*) FROM channel_connections WHERE"
        . " position(convert_to('$new_token', 'UTF8') in credentials) > 0"),
   '0', 'the new secret is not in the clear either');

# an api channel's new credentials without a secret: a new one, once
$r = call($t, 'PATCH', "/api/v1/channels/$api->{id}", token => $A,
          body => { credentials => { note => 'rotated by PATCH' } });
is($r->{status}, 200, 'api channel, credentials without a secret: 200');
my $rotated = $r->{json}{secret} // '';
push @SECRETS, $rotated if $rotated;
like($rotated, qr/^[A-Za-z0-9_-]{43}$/, '... a new secret, shown once');
isnt($rotated, $api->{secret}, '... not the old one');
is_deeply([ sort keys %{ $r->{json}{credentials} } ], [qw(note secret)],
          '... kept with the credentials given');
($st, $body) = open_box(box_of($api->{id}), $tid, $api->{id});
is(eval { JSON::PP->new->decode($body)->{secret} }, $rotated,
   '... and sealed in the box');
$r = call($t, 'PATCH', "/api/v1/channels/$api->{id}", token => $A,
          body => { name => 'Zapier 2' });
ok($r->{status} == 200 && !exists $r->{json}{secret},
   'a PATCH without credentials shows no secret');
$r = call($t, 'PATCH', "/api/v1/channels/$api_own->{id}", token => $A,
          body => { credentials => { secret => secret_value('own2') } });
ok($r->{status} == 200 && !exists $r->{json}{secret},
   'new credentials with their own secret: none made');

# --- pages and the channel filter, in a fresh tenant
my ($pager) = tenant('pages');
my @made;
for my $i (1 .. 5) {
    my $ch = $i % 2 ? 'telegram' : 'email';
    $r = call($t, 'POST', '/api/v1/channels', token => $pager->{accessToken},
              body => { channel => $ch, name => "C$i",
                        accountId => uniq("acct$i") });
    push @made, $r->{json}{id};
}
my (@seen, $cursor, $pages);
do {
    $r = call($t, 'GET', '/api/v1/channels?limit=2'
              . ($cursor ? "&cursor=$cursor" : ''),
              token => $pager->{accessToken});
    push @seen, map { $_->{id} } @{ $r->{json}{data} };
    $cursor = $r->{json}{nextCursor};
    $pages++;
} while ($cursor && $pages < 10);
is($pages, 3, 'five connections, two a page: three pages');
is_deeply(\@seen, [ reverse @made ], 'newest first, each once');
$r = call($t, 'GET', '/api/v1/channels?channel=email',
          token => $pager->{accessToken});
is_deeply([ map { $_->{id} } @{ $r->{json}{data} } ], [ @made[3, 1] ],
          '?channel=email: the email ones only');
ok(!defined $r->{json}{nextCursor}, '... one page');

# --- delete
$r = call($t, 'DELETE', "/api/v1/channels/$wa->{id}", token => $A);
is($r->{status}, 204, 'delete: 204');
is($r->{body}, '', '... no body');
$r = call($t, 'GET', "/api/v1/channels/$wa->{id}", token => $A);
is($r->{status}, 404, 'gone');
$r = call($t, 'DELETE', "/api/v1/channels/$wa->{id}", token => $A);
is($r->{status}, 404, 'deleting again: 404');

# --- the audit log saw the writes, and no secret
$r = call($t, 'GET', '/api/v1/audit-logs?limit=200', token => $A);
my %actions = map { $_->{action} => 1 } @{ $r->{json}{data} };
ok($actions{$_}, "audit has $_")
    for qw(channel.created channel.updated channel.disabled channel.deleted);
my ($created) = grep { $_->{action} eq 'channel.created'
                       && $_->{target} eq $wa->{id} } @{ $r->{json}{data} };
is_deeply($created->{details}{credentialKeys},
          [ sort keys %wa_creds ], 'it names the credential keys');
is(psql("SELECT count(*) FROM audit_logs WHERE "
        . join(' OR ', map { "details::text LIKE '%$_%'" }
                       grep { length > 12 } @SECRETS)), '0',
   'and holds no secret');

# --- no answer but the one that made it showed a secret
my @leaks;
for my $a (@ANSWERS) {
    my @s = shows_secret($a->{body}, $a->{json} && ref $a->{json} eq 'HASH'
                                     ? ($a->{json}{secret} // ()) : ());
    push @leaks, "$a->{status}: @s" if @s;
}
is_deeply(\@leaks, [], 'no answer (' . scalar(@ANSWERS)
          . ') shows a plaintext secret but its own one-time one');

$t->stop;
my $log = $t->error_log;
is_deeply([ grep { index($log, $_) >= 0 } @SECRETS ], [],
          'the error log holds no secret');
no_bad_log($t);

done_testing();
