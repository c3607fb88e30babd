# Tenant isolation, route by route: every route of the route table
# (src/api/orbit_api.c) that takes an :id is called with another tenant's
# ids, as an attacking tenant's ADMIN (JWT) and with its all-scopes API key.
# Each answer is 403 or 404 and shows none of the victim's data; the
# victim's rows are unchanged afterwards; the attacker's lists show none of
# the victim's data either.  A new route with an :id fails this test until
# it is taught which victim id to use (%VICTIM_ID below).

use strict;
use warnings;
use Test::More;
use JSON::PP ();
use Orbit::Test;

my $root_dir = $ENV{ORBIT_ROOT} // '.';

# --- the route table, as t/015-openapi.t reads it
open my $fh, '<', "$root_dir/src/api/orbit_api.c" or die $!;
my $c = do { local $/; <$fh> };
close $fh;
my ($table) = $c =~ /orbit_api_routes\[\] = \{(.*?)\n\};/s;
ok($table, 'found the route table');

my @routes;
while ($table =~ /\{\s*"([A-Z]+)",\s*"([^"]+)"/g) {
    push @routes, [ $1, $2 ];
}
my @param_routes = grep { $_->[1] =~ /:\w+/ } @routes;
cmp_ok(scalar @param_routes, '>=', 9,
       'routes with a parameter: ' . scalar @param_routes);

my $HTTP = <<"_EOC_";
orbit_postgres "$ENV{TEST_NGINX_PG_DSN}" pool=4;
orbit_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};
orbit_secrets $ENV{TEST_NGINX_SECRETS};
orbit_apikey_zone keys 1m;
_EOC_

my $t = orbit_nginx(workers => 2, http_config => $HTTP);
$t->start;

my ($root_email, $root_pw) = make_superadmin();
my $root = login($t, $root_email, $root_pw);

my @ALL_SCOPES = qw(contacts:read contacts:write conversations:read
    messages:read messages:send flows:read flows:trigger templates:read);

# an approved tenant: (admin session, tenant id, admin email)
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
    return (login($t, $email, 'correct horse battery'), $id, $email);
}

sub all_scopes_key {
    my ($s, $name) = @_;
    my $r = api($t, 'POST', '/api/v1/api-keys', token => $s->{accessToken},
                body => { name => $name, scopes => [@ALL_SCOPES] });
    die "create key: $r->{status} $r->{body}" unless $r->{status} == 201;
    return $r->{json};
}

# --- the victim: a contact, an extra user, an API key
my ($vadmin, $vtid, $vadmin_email) = tenant('victim');
my $VNAME = 'VICTIM-SECRET-NAME';
my $vphone = sprintf '+1555%07d', $$ % 10_000_000;
my $vcemail = uniq('vc') . '@victim-contact.test';

my $r = api($t, 'POST', '/api/v1/contacts', token => $vadmin->{accessToken},
            body => { phone => $vphone, name => $VNAME, email => $vcemail,
                      tags => ['vtag'] });
die "victim contact: $r->{status} $r->{body}" unless $r->{status} == 201;
my $vcontact = $r->{json}{id};

my $vuser_email = uniq('vu') . '@victim.test';
my $VUSER = 'VICTIM-USER-NAME';
$r = api($t, 'POST', '/api/v1/users', token => $vadmin->{accessToken},
         body => { email => $vuser_email, name => $VUSER, role => 'AGENT',
                   password => 'victim-agent-pass' });
die "victim user: $r->{status} $r->{body}" unless $r->{status} == 201;
my $vuser = $r->{json}{id};

my $vkey = all_scopes_key($vadmin, 'VICTIM-KEY-NAME');

# a conversation with a message, as the inbox pipeline would store them
my $vconv = psql("INSERT INTO conversations (tenant_id, contact_id, channel)"
                 . " VALUES ('$vtid', '$vcontact', 'whatsapp') RETURNING id");
my $vmedia = psql("INSERT INTO media (tenant_id, storage, key, mime_type,"
                  . " size, sha256, filename, source) VALUES ('$vtid',"
                  . " 'local', '$vtid/x', 'text/plain', 6, repeat('0', 64),"
                  . " 'VICTIM-FILE.txt', 'upload') RETURNING id");
psql("INSERT INTO messages (tenant_id, conversation_id, direction, type,"
     . " content, status) VALUES ('$vtid', '$vconv', 'inbound', 'text',"
     . " '{\"text\": \"VICTIM-MESSAGE-TEXT\"}', 'received')");
my $VCHAN_TOKEN = 'VICTIM-CHANNEL-TOKEN-' . uniq();
my $vaccount = uniq('victim-account');
$r = api($t, 'POST', '/api/v1/channels', token => $vadmin->{accessToken},
         body => { channel => 'telegram', name => 'VICTIM-CHANNEL-NAME',
                   accountId => $vaccount,
                   credentials => { botToken => $VCHAN_TOKEN } });
die "victim channel: $r->{status} $r->{body}" unless $r->{status} == 201;
my $vchannel = $r->{json}{id};

# --- the attacker: its admin and an all-scopes key
my ($aadmin, $atid) = tenant('attacker');
my $akey = all_scopes_key($aadmin, 'attacker key');
my $ATOK = $aadmin->{accessToken};

# what must never appear in an answer to the attacker
my %SECRET = (
    'victim tenant id' => $vtid,
    'victim contact id' => $vcontact,
    'victim user id' => $vuser,
    'victim admin id' => $vadmin->{user}{id},
    'victim key id' => $vkey->{id},
    'victim key' => $vkey->{key},
    'victim key name' => 'VICTIM-KEY-NAME',
    'victim contact name' => $VNAME,
    'victim contact phone' => $vphone,
    'victim contact email' => $vcemail,
    'victim user name' => $VUSER,
    'victim user email' => $vuser_email,
    'victim admin email' => $vadmin_email,
    'victim conversation id' => $vconv,
    'victim message text' => 'VICTIM-MESSAGE-TEXT',
    'victim channel id' => $vchannel,
    'victim channel name' => 'VICTIM-CHANNEL-NAME',
    'victim channel account' => $vaccount,
    'victim channel token' => $VCHAN_TOKEN,
);

sub leaks {
    my ($body) = @_;
    $body //= '';
    return grep { index(lc $body, lc $SECRET{$_}) >= 0 } sort keys %SECRET;
}

# the victim's rows as they are: compared after the attacks
sub victim_state {
    return join "\n",
        psql("SELECT name, phone, email, tags::text FROM contacts"
             . " WHERE id = '$vcontact' AND tenant_id = '$vtid'"),
        psql("SELECT name, role, is_active FROM users WHERE id = '$vuser'"),
        psql("SELECT name, is_active, revoked_at IS NULL FROM api_keys"
             . " WHERE id = '$vkey->{id}'"),
        psql("SELECT status, name FROM tenants WHERE id = '$vtid'"),
        psql("SELECT status, tags::text, unread_count FROM conversations"
             . " WHERE id = '$vconv'"),
        psql("SELECT count(*) FROM messages WHERE conversation_id"
             . " = '$vconv'"),
        psql("SELECT name, status, config::text, credentials::text,"
             . " credentials_hint::text FROM channel_connections"
             . " WHERE id = '$vchannel'");
}
my $before = victim_state();
like($before, qr/\Q$VNAME\E.*\{vtag\}/, 'the victim contact, tagged vtag');

# the attacker's credentials: its admin's JWT and its key
my %CRED = (
    jwt => sub { return (token => $ATOK) },
    'api key' => sub { return (headers => { 'X-Api-Key' => $akey->{key} }) },
);

# --- the attacker's lists, before any attack
my @LISTS = ('/api/v1/contacts', '/api/v1/users', '/api/v1/api-keys',
             '/api/v1/audit-logs', '/api/v1/contacts/export',
             '/api/v1/contacts?search=VICTIM', "/api/v1/contacts?tag=vtag",
             '/api/v1/auth/me', '/api/v1/conversations',
             "/api/v1/conversations?contactId=$vcontact",
             '/api/v1/channels',
             '/api/v1/channels?channel=telegram');

sub check_lists {
    my ($when) = @_;
    for my $path (@LISTS) {
        for my $cred (sort keys %CRED) {
            my $res = api($t, 'GET', $path, $CRED{$cred}->());
            my @l = leaks($res->{body});
            ok(!@l, "$when: GET $path as attacker's $cred "
                    . "($res->{status}): none of the victim's data")
                or diag("leaked: @l\n$res->{body}");
        }
    }
    # the attacker's own list works, or the test proves nothing
    my $res = api($t, 'GET', '/api/v1/contacts', token => $ATOK);
    is($res->{status}, 200, "$when: the attacker lists its own contacts");
}
check_lists('before');

# --- every route with a parameter, with the victim's ids

# the victim's id for a parameter, by the path segment before it
my %VICTIM_ID = (
    'tenants/:id' => $vtid,
    'users/:id' => $vuser,
    'api-keys/:id' => $vkey->{id},
    'contacts/:id' => $vcontact,
    'channels/:id' => $vchannel,
    'tags/:tag' => 'vtag',
    # a provider's webhook: signed, so no credentials of ours get through
    'channels/:channel' => 'whatsapp',
    'conversations/:id' => $vconv,
    'media/:id' => $vmedia,
);

# a valid body for the writes, by route ("METHOD path")
my %BODY = (
    'PATCH /api/v1/tenants/:id' => { status => 'suspended' },
    'PATCH /api/v1/users/:id' => { name => 'pwned' },
    'PATCH /api/v1/contacts/:id' => { name => 'pwned' },
    'POST /api/v1/contacts/:id/tags' => { tags => ['pwned'] },
    'PATCH /api/v1/api-keys/:id/revoke' => {},
    'PATCH /api/v1/conversations/:id' => { status => 'resolved',
                                           tags => ['pwned'] },
    'POST /api/v1/conversations/:id/read' => {},
    'PATCH /api/v1/channels/:id' => { name => 'pwned', status => 'disabled',
                                      credentials => { botToken => 'x' } },
);

my %ORDER = (GET => 0, POST => 1, PATCH => 2, DELETE => 3);
for my $route (sort { ($ORDER{$a->[0]} // 9) <=> ($ORDER{$b->[0]} // 9)
                      || $a->[1] cmp $b->[1] } @param_routes) {
    my ($method, $pattern) = @$route;
    my $path = $pattern;
    my @unknown;
    # a keyed channel's webhook: the channel, then the account
    $path =~ s{/:channel/:account/}{/api/$vaccount/};
    $path =~ s{([\w-]+)/:(\w+)}{
        my $k = "$1/:$2";
        exists $VICTIM_ID{$k} ? "$1/$VICTIM_ID{$k}" : do { push @unknown, $k; "$1/:$2" }
    }ge;
    if (@unknown || $path =~ /:\w/) {
        fail("$method $pattern: no victim id known for @unknown "
             . '(teach %VICTIM_ID in t/016-isolation.t)');
        next;
    }
    my @body = ($method eq 'POST' || $method eq 'PATCH')
        ? (body => $BODY{"$method $pattern"} // { name => 'pwned' }) : ();

    for my $cred (sort keys %CRED) {
        my $res = api($t, $method, $path, @body, $CRED{$cred}->());
        ok($res->{status} == 403 || $res->{status} == 404,
           "$method $pattern as attacker's $cred: 403 or 404"
           . " (got $res->{status})")
            or diag($res->{body});
        my @l = leaks($res->{body});
        ok(!@l, "$method $pattern as attacker's $cred: "
                . "none of the victim's data in the answer")
            or diag("leaked: @l\n$res->{body}");
    }
}

# --- a send names its conversation in the body
for my $cred (sort keys %CRED) {
    my $res = api($t, 'POST', '/api/v1/messages', $CRED{$cred}->(),
                  body => { conversationId => $vconv, content => 'pwned' });
    is($res->{status}, 404, "POST /api/v1/messages into the victim's"
       . " conversation as attacker's $cred: 404");
}

# --- nothing of the victim's changed
is(victim_state(), $before, "the victim's contact, user, key, tenant and"
   . ' channel connection are unchanged');
is(psql("SELECT name FROM contacts WHERE id = '$vcontact'"), $VNAME,
   '... the contact keeps its name');
is(psql("SELECT array_to_string(tags, ',') FROM contacts"
        . " WHERE id = '$vcontact'"), 'vtag', '... and its tags');
is(psql("SELECT name FROM users WHERE id = '$vuser'"), $VUSER,
   '... the user keeps its name');
is(psql("SELECT is_active FROM api_keys WHERE id = '$vkey->{id}'"), 't',
   '... the key is still active');
is(psql("SELECT status FROM tenants WHERE id = '$vtid'"), 'active',
   '... the tenant is still active');
is(psql("SELECT name || ' ' || status FROM channel_connections"
        . " WHERE id = '$vchannel'"), 'VICTIM-CHANNEL-NAME active',
   '... the channel connection is still there, as it was');

# and the victim's own credentials still work on them
$r = api($t, 'GET', "/api/v1/contacts/$vcontact",
         headers => { 'X-Api-Key' => $vkey->{key} });
is($r->{status}, 200, "the victim's key still reads its contact");
is($r->{json}{name}, $VNAME, '... as it was');

check_lists('after');

$t->stop;
no_bad_log($t);

done_testing();
