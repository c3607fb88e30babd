# /api/v1/api-keys and X-Api-Key authentication: a key shown once and
# stored as SHA-256; scopes (403 naming the missing one); expired, revoked
# and deleted keys refused at once, by every worker and, through Redis, by
# another node; at most 20 active keys per tenant, even under concurrent
# creation; per-key rate limits; JWT first; tenants kept apart; a warm
# cache authenticates without the database.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX qw(strftime);
use Digest::SHA qw(sha256_hex);
use Orbit::Nginx qw(build_request);
use Orbit::Test;

my $PORT = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $SERVROOT = $ENV{TEST_NGINX_SERVROOT} // 't/servroot';

my $HTTP = <<"_EOC_";
orbit_postgres "$ENV{TEST_NGINX_PG_DSN}" pool=4;
orbit_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};
orbit_secrets $ENV{TEST_NGINX_SECRETS};
orbit_apikey_zone keys 1m;
orbit_limit_zone rl 1m rate=10000r/m;
_EOC_

# /api/v1/contacts/export has its own small rate, for the per-key limits
my %NGX = (
    workers => 2,
    http_config => $HTTP,
    api_config => 'orbit_limit rl;',
    config => "location /api/v1/contacts/export {\n"
            . "    orbit_api; orbit_limit rl rate=3r/m;\n}\n",
);

my $t = orbit_nginx(%NGX);
$t->start;
ok(wait_until(5, sub { $t->worker_pids == 2 }), 'both workers are up');

my ($root_email, $root_pw) = make_superadmin();
my $root = login($t, $root_email, $root_pw);

# an approved tenant and its admin's session
sub tenant {
    my $slug = uniq('keys');
    my $r = api($t, 'POST', '/api/v1/auth/register', body => {
        tenantName => "Keys $slug", slug => $slug, name => 'Admin',
        email => "$slug\@keys.test", password => 'correct horse battery' });
    die "register: $r->{status} $r->{body}" unless $r->{status} == 201;
    api($t, 'PATCH', "/api/v1/tenants/$r->{json}{tenant}{id}",
        body => { status => 'active' }, token => $root->{accessToken});
    return login($t, "$slug\@keys.test", 'correct horse battery');
}

sub create_key {
    my ($s, %body) = @_;
    return api($t, 'POST', '/api/v1/api-keys', token => $s->{accessToken},
               body => { name => 'k', scopes => ['contacts:read'], %body });
}

sub new_key {
    my $r = create_key(@_);
    die "create key: $r->{status} $r->{body}" unless $r->{status} == 201;
    return $r->{json};
}

# a keyed call ($n = $t by default)
sub keyed {
    my ($key, $method, $path, %o) = @_;
    my $n = delete $o{on} // $t;
    return api($n, $method, $path, %o,
               headers => { 'X-Api-Key' => $key, %{ $o{headers} // {} } });
}

sub h { my ($r, $name) = @_; return $r->{headers}{ lc $name } // '' }

my $admin = tenant();
my $other = tenant();

# --- creation: the key once, its hash only in the database
my $r = create_key($admin, name => 'Zapier Integration',
                   scopes => ['contacts:read', 'messages:send',
                              'contacts:read']);
is($r->{status}, 201, 'create: 201');
my $k1 = $r->{json};
like($k1->{key}, qr/^wcrm_[A-Za-z0-9_-]{43}$/,
     'the key: wcrm_ and 43 base64url characters');
is_deeply([ sort keys %$k1 ],
          [qw(createdAt expiresAt id isActive key name prefix scopes)],
          'id, name, key, scopes, expiresAt, createdAt, isActive (and prefix)');
is_deeply($k1->{scopes}, ['contacts:read', 'messages:send'],
          'scopes: each once, in the spec\'s order');
ok($k1->{isActive} && !defined $k1->{expiresAt}, 'active, never expires');
is($k1->{prefix}, substr($k1->{key}, 0, 9), 'prefix: the first 9 characters');

$r = api($t, 'GET', '/api/v1/api-keys', token => $admin->{accessToken});
is($r->{status}, 200, 'list: 200');
my ($listed) = grep { $_->{id} eq $k1->{id} } @{ $r->{json}{data} };
ok($listed, 'the key is listed');
ok(index($r->{body}, $k1->{key}) < 0 && !exists $listed->{key}
   && !exists $listed->{keyHash}, 'the list never shows the key nor a hash');
is_deeply([ sort keys %$listed ], [qw(createdAt createdBy expiresAt id
    isActive lastUsedAt name prefix revokedAt scopes)], 'list fields');

is(psql("SELECT count(*) FROM api_keys WHERE key_hash = '"
        . sha256_hex($k1->{key}) . "'"), '1', 'the database has its SHA-256');
is(psql("SELECT count(*) FROM api_keys WHERE key_hash = '$k1->{key}'"
        . " OR prefix = '$k1->{key}' OR name = '$k1->{key}'"), '0',
   '... and never the key');
ok(index($t->error_log, $k1->{key}) < 0, 'nor does the error log');

# --- bad input
my $SCOPES = join ', ', qw(contacts:read contacts:write conversations:read
    messages:read messages:send flows:read flows:trigger templates:read);
my %bad = (
    'no name' => [ { scopes => ['contacts:read'] },
                   qr/name should not be empty/ ],
    'long name' => [ { name => 'x' x 101, scopes => ['contacts:read'] },
                     qr/name must be shorter than or equal to 100/ ],
    'no scopes' => [ { name => 'n', scopes => [] },
                     qr/scopes must contain at least 1 elements/ ],
    'unknown scope' => [ { name => 'n', scopes => ['contacts:read', 'root'] },
        qr/\Qscopes must contain only known scopes: $SCOPES\E/ ],
    'unknown field' => [ { name => 'n', scopes => ['contacts:read'],
                           tenantId => $other->{user}{tenantId} },
                         qr/property tenantId should not exist/ ],
    'expiry in the past' => [ { name => 'n', scopes => ['contacts:read'],
                                expiresAt => '2001-01-01T00:00:00Z' },
                              qr/expiresAt must be a date in the future/ ],
    'expiry not a date' => [ { name => 'n', scopes => ['contacts:read'],
                               expiresAt => 'tomorrow' },
                             qr/expiresAt must be a valid ISO 8601/ ],
);
for my $case (sort keys %bad) {
    my ($body, $re) = @{ $bad{$case} };
    $r = api($t, 'POST', '/api/v1/api-keys', body => $body,
             token => $admin->{accessToken});
    is($r->{status}, 400, "create, $case: 400");
    like(json_of($r->{json}{message}), $re, "create, $case: says why");
}
$r = create_key($admin, name => 'soon',
    expiresAt => strftime('%Y-%m-%dT%H:%M:%SZ', gmtime(time + 3600)));
is($r->{status}, 201, 'an expiry in the future is fine');
ok($r->{json}{expiresAt}, '... and shown');

$r = api($t, 'POST', '/api/v1/api-keys', token => $root->{accessToken},
         body => { name => 'n', scopes => ['contacts:read'] });
is($r->{status}, 403, 'a superadmin (no tenant) cannot create keys');

# --- authentication and scopes
$r = keyed($k1->{key}, 'GET', '/api/v1/contacts');
ok($r->{status} != 401 && $r->{status} != 403,
   "contacts:read reads contacts (got $r->{status})");
$r = keyed($k1->{key}, 'POST', '/api/v1/contacts', body => { name => 'x' });
is($r->{status}, 403, 'no contacts:write: 403');
is($r->{json}{message}, 'Missing scope: contacts:write', '... naming it');

# a key not cached yet: the request waits for its lookup, then its body
my $writer = new_key($admin, scopes => ['contacts:write']);
$r = keyed($writer->{key}, 'POST', '/api/v1/contacts',
           body => { name => 'Big', notes => 'x' x 300_000 });
ok($r->{status} != 401 && $r->{status} != 403 && $r->{status} != 500,
   "a cold key with a 300 kB body reaches the handler (got $r->{status})");
$r = keyed(new_key_text(), 'POST', '/api/v1/contacts',
           body => { name => 'x' x 300_000 });
is($r->{status}, 401, '... an unknown one is refused, its body discarded');

my $sender = new_key($admin, scopes => ['messages:send']);
$r = keyed($sender->{key}, 'GET', '/api/v1/contacts');
is($r->{status}, 403, 'a messages:send key reading contacts: 403');
is($r->{json}{message}, 'Missing scope: contacts:read', '... naming it');

for my $path ('/api/v1/api-keys', '/api/v1/auth/me', '/api/v1/users',
              '/api/v1/audit-logs') {
    $r = keyed($k1->{key}, 'GET', $path);
    is($r->{status}, 403, "a key on $path (no scope names it): 403");
}
is($r->{json}{message}, 'API keys cannot access this resource', '... and why');

$r = keyed($k1->{key}, 'GET', '/api/v1/health');
is($r->{status}, 200, 'public routes ignore the key');

for my $bad ('nope', 'wcrm_' . ('A' x 43), 'wcrm_' . ('!' x 43),
             substr($k1->{key}, 0, 47), "$k1->{key}x", uc $k1->{key}) {
    $r = keyed($bad, 'GET', '/api/v1/contacts');
    is($r->{status}, 401, "a bad key ($bad): 401");
}
is($r->{json}{message}, 'Invalid API key', '... and why');
$r = api($t, 'GET', '/api/v1/contacts');
is($r->{status}, 401, 'neither key nor token: 401');

# JWT first: with a Bearer token the key is not looked at
$r = keyed('wcrm_' . ('B' x 43), 'GET', '/api/v1/auth/me',
           token => $admin->{accessToken});
is($r->{status}, 200, 'a valid JWT and a bad key: the JWT wins');
$r = keyed($k1->{key}, 'GET', '/api/v1/auth/me',
           token => $admin->{accessToken});
is($r->{status}, 200, 'a valid JWT and a valid key: the JWT (keys may '
   . 'not call /auth/me)');
is($r->{json}{id}, $admin->{user}{id}, '... as its user');
$r = keyed($k1->{key}, 'GET', '/api/v1/contacts', token => 'not-a-jwt');
is($r->{status}, 401, 'a bad JWT and a valid key: the JWT decides, 401');

# --- lastUsedAt, written behind the request's back
ok(wait_until(4, sub {
       psql("SELECT last_used_at IS NOT NULL FROM api_keys"
            . " WHERE id = '$k1->{id}'") eq 't' }),
   'lastUsedAt is written within a few seconds');
$r = api($t, 'GET', '/api/v1/api-keys', token => $admin->{accessToken});
($listed) = grep { $_->{id} eq $k1->{id} } @{ $r->{json}{data} };
ok($listed->{lastUsedAt}, '... and listed');

# --- expiry: set behind the API's back before first use, and by the clock
my $exp = new_key($admin);
psql("UPDATE api_keys SET expires_at = now() - interval '1 minute'"
     . " WHERE id = '$exp->{id}'");
$r = keyed($exp->{key}, 'GET', '/api/v1/contacts');
is($r->{status}, 401, 'an expired key: 401');

my $soon = new_key($admin,
    expiresAt => strftime('%Y-%m-%dT%H:%M:%SZ', gmtime(int(time) + 2)));
$r = keyed($soon->{key}, 'GET', '/api/v1/contacts');
ok($r->{status} != 401, 'a key expiring in 2 s works (and is cached)');
ok(wait_until(4, sub {
       keyed($soon->{key}, 'GET', '/api/v1/contacts')->{status} == 401 }),
   '... and is refused once it expires, cached or not');

# --- revocation: at once, whichever worker answers
my $rev = new_key($admin);
my @warm = map { keyed($rev->{key}, 'GET', '/api/v1/contacts')->{status} }
           1 .. 8;
ok(!(grep { $_ == 401 || $_ == 403 } @warm), 'the key works (8 requests)');

$r = api($t, 'PATCH', "/api/v1/api-keys/$rev->{id}/revoke",
         token => $other->{accessToken});
is($r->{status}, 404, "another tenant's admin revoking it: 404");

$r = api($t, 'PATCH', "/api/v1/api-keys/$rev->{id}/revoke",
         token => $admin->{accessToken});
is($r->{status}, 200, 'revoke: 200');
ok(!$r->{json}{isActive} && $r->{json}{revokedAt},
   '... inactive, revokedAt set');

my @after = map { keyed($rev->{key}, 'GET', '/api/v1/contacts')->{status} }
            1 .. 8;
is_deeply(\@after, [ (401) x 8 ], 'refused at once, by both workers');

$r = api($t, 'PATCH', "/api/v1/api-keys/$rev->{id}/revoke",
         token => $admin->{accessToken});
is($r->{status}, 200, 'revoking again: 200, nothing changes');
$r = api($t, 'PATCH', '/api/v1/api-keys/not-a-uuid/revoke',
         token => $admin->{accessToken});
is($r->{status}, 400, 'a malformed id: 400');

# --- deletion
my $del = new_key($admin);
keyed($del->{key}, 'GET', '/api/v1/contacts') for 1 .. 4;

$r = api($t, 'DELETE', "/api/v1/api-keys/$del->{id}",
         token => $other->{accessToken});
is($r->{status}, 404, "another tenant's admin deleting it: 404");
$r = api($t, 'DELETE', "/api/v1/api-keys/$del->{id}",
         token => $admin->{accessToken});
is($r->{status}, 200, 'delete: 200');
is_deeply($r->{json}, { success => JSON::PP::true }, '... {"success":true}');
is_deeply([ map { keyed($del->{key}, 'GET', '/api/v1/contacts')->{status} }
            1 .. 6 ], [ (401) x 6 ], 'a deleted key: 401 at once');
$r = api($t, 'DELETE', "/api/v1/api-keys/$del->{id}",
         token => $admin->{accessToken});
is($r->{status}, 404, 'deleting it again: 404');

$r = api($t, 'GET', '/api/v1/api-keys', token => $other->{accessToken});
ok(!(grep { $_->{id} eq $k1->{id} } @{ $r->{json}{data} }),
   "another tenant's admin does not list the key");

my $tid = $admin->{user}{tenantId};
is(psql("SELECT string_agg(DISTINCT action, ',' ORDER BY action)"
        . " FROM audit_logs WHERE tenant_id = '$tid'"
        . " AND action LIKE 'api\\_key.%'"),
   'api_key.created,api_key.deleted,api_key.revoked',
   'audit log: api_key.created, .revoked, .deleted');
is(psql("SELECT count(*) FROM audit_logs WHERE action = 'api_key.revoked'"
        . " AND target = '$rev->{id}'"), '1', 'one revocation, recorded once');

# --- at most 20 active keys, even when 25 are asked for at once
my $cap = tenant();
my @reqs = map {
    build_request('POST', '/api/v1/api-keys',
        json_of({ name => "k$_", scopes => ['contacts:read'] }),
        headers => { Authorization => "Bearer $cap->{accessToken}",
                     'Content-Type' => 'application/json' })
} 1 .. 25;
my @res = $t->parallel_requests(\@reqs, timeout => 20);
my $created = grep { $_->{status} == 201 } @res;
my $refused = grep { $_->{status} == 400 } @res;
is($created, 20, '25 concurrent creations: 20 created');
is($refused, 5, '... 5 refused');
my $capt = $cap->{user}{tenantId};
is(psql("SELECT count(*) FROM api_keys WHERE tenant_id = '$capt'"
        . " AND is_active"), '20', '20 active in the database');
is(psql("SELECT active FROM api_key_counts WHERE tenant_id = '$capt'"), '20',
   'the counter agrees');

$r = create_key($cap, name => 'the 21st');
is($r->{status}, 400, 'the 21st: 400');
like($r->{json}{message}, qr/at most 20 active API keys: revoke or delete/,
     '... says why and what to do');

my ($one) = map { $_->{body} =~ /"id" : "([^"]+)"/ ? $1 : () }
            grep { $_->{status} == 201 } @res;
$r = api($t, 'PATCH', "/api/v1/api-keys/$one/revoke",
         token => $cap->{accessToken});
is($r->{status}, 200, 'one revoked');
is(create_key($cap, name => 'room again')->{status}, 201,
   'then a new one fits');

# --- rate limits: per key, not per address
my ($ka, $kb, $kc) = map { new_key($other) } 1 .. 3;
my @ra = map { keyed($ka->{key}, 'GET', '/api/v1/contacts/export') } 1 .. 4;
is_deeply([ map { h($_, 'X-RateLimit-Remaining') } @ra[0 .. 2] ], [2, 1, 0],
          'key A counts down its own budget (3 a minute)');
is($ra[3]{status}, 429, 'key A, 4th request: 429');
ok(h($ra[3], 'Retry-After') =~ /^\d+$/, '... with Retry-After');
$r = keyed($kb->{key}, 'GET', '/api/v1/contacts/export');
ok($r->{status} != 429 && h($r, 'X-RateLimit-Remaining') eq '2',
   'key B from the same address: its own full budget');
$r = keyed($kc->{key}, 'GET', '/api/v1/contacts');
is(h($r, 'X-RateLimit-Remaining'), '9999',
   'a fresh key on /api/: its first request, whatever the address spent');
$r = api($t, 'GET', '/api/v1/auth/me', token => $admin->{accessToken});
ok(h($r, 'X-RateLimit-Remaining') < 9950,
   'JWT requests count per address (this test\'s many)');
# one zone, one count per key whatever the rate: this address has spent
# far more than 3 requests on /api/
$r = keyed('wcrm_' . ('C' x 43), 'GET', '/api/v1/contacts/export');
is($r->{status}, 429, 'a bad key counts against its address (spent): 429');

# --- revocation reaches another node through Redis
my $t2 = orbit_nginx(%NGX, workers => 1, port => $PORT + 1,
                     servroot => "${SERVROOT}2");
$t2->start;
my $far = new_key($admin);
$r = keyed($far->{key}, 'GET', '/api/v1/contacts', on => $t2);
ok($r->{status} != 401 && $r->{status} != 403,
   'the key works on node 2 (now cached there for 30 s)');
$r = api($t, 'PATCH', "/api/v1/api-keys/$far->{id}/revoke",
         token => $admin->{accessToken});
is($r->{status}, 200, 'revoked through node 1');
my $took = wait_until(2, sub {
    keyed($far->{key}, 'GET', '/api/v1/contacts', on => $t2)->{status} == 401
});
ok(defined $took, 'node 2 refuses it within 2 s (its cache would keep it '
   . '30 s: this is the Redis message)');
diag(sprintf 'node 2 refused it after %.3f s', $took // -1);

# --- a warm cache needs no database
my $reader = new_key($admin);
keyed($reader->{key}, 'GET', '/api/v1/contacts') for 1 .. 4;
keyed($sender->{key}, 'GET', '/api/v1/contacts') for 1 .. 4;
my $stranger = 'wcrm_' . ('D' x 43);
keyed($stranger, 'GET', '/api/v1/contacts') for 1 .. 4;

pg_service('stop');
my $t0 = time;
$r = keyed($sender->{key}, 'GET', '/api/v1/contacts');
is($r->{status}, 403, 'PostgreSQL down: a cached key still gets its 403');
is($r->{json}{message}, 'Missing scope: contacts:read',
   '... its scopes came from the cache, not the database');
$r = keyed($reader->{key}, 'GET', '/api/v1/contacts');
ok($r->{status} != 401 && $r->{status} != 403,
   'a cached key with the scope is authorised '
   . "(the handler then: $r->{status})");
$r = keyed($rev->{key}, 'GET', '/api/v1/contacts');
is($r->{status}, 401, 'a cached revoked key: 401');
$r = keyed($stranger, 'GET', '/api/v1/contacts');
is($r->{status}, 401, 'a bad key seen seconds ago: 401 from the cache');
$r = keyed(new_key_text(), 'GET', '/api/v1/contacts');
is($r->{status}, 503, 'a key never seen needs the database: 503');
cmp_ok(time - $t0, '<', 2, 'all answered promptly');
pg_service('start');
ok(wait_until(5, sub { $t->http_get('/api/v1/health')->{status} == 200 }),
   'PostgreSQL back');

sub new_key_text {
    return 'wcrm_' . join '', map { ('A' .. 'Z', 'a' .. 'z', 0 .. 9)[rand 62] }
                              1 .. 43;
}

# --- a reload keeps the cache (the zone is adopted) and the subscriptions
ok($t->reload && $t2->reload, 'reload both nodes');
$r = keyed($reader->{key}, 'GET', '/api/v1/contacts');
ok($r->{status} != 401 && $r->{status} != 403, 'keys work after a reload');
my $late = new_key($admin);
keyed($late->{key}, 'GET', '/api/v1/contacts', on => $t2);
api($t, 'DELETE', "/api/v1/api-keys/$late->{id}",
    token => $admin->{accessToken});
ok(wait_until(2, sub {
       keyed($late->{key}, 'GET', '/api/v1/contacts', on => $t2)->{status}
       == 401 }), 'a deletion reaches node 2 too');

$t2->stop;
$t->stop;
no_bad_log($t);
no_bad_log($t2, name => 'node 2: no [alert], [crit] or [emerg]');

done_testing();
