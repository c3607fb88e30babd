# /api/v1/auth and /api/v1/tenants: register -> pending -> approved by a
# superadmin -> login -> me -> refresh rotation with reuse detection ->
# logout; roles, bad input, JWT tampering, the audit log.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time);
use Orbit::Nginx qw(build_request);
use Orbit::Test;

my $t = orbit_nginx(workers => 2, pool => 4,
                    api_config => 'client_max_body_size 1m;');
$t->start;

my ($root_email, $root_pw) = make_superadmin();
my $root = login($t, $root_email, $root_pw);
is($root->{user}{role}, 'SUPERADMIN', 'the superadmin logs in');
ok(!defined $root->{user}{tenantId}, 'a superadmin belongs to no tenant');

# --- registration
my $slug = uniq('acme');
my $email = "$slug\@acme.test";
my $r = api($t, 'POST', '/api/v1/auth/register', body => {
    tenantName => "Acme $slug", slug => $slug, name => 'Ann Admin',
    email => $email, password => 'correct horse battery' });
is($r->{status}, 201, 'register: 201');
is($r->{json}{tenant}{status}, 'pending', 'the tenant waits for approval');
is($r->{json}{user}{role}, 'ADMIN', 'its first user is its admin');
ok(!exists $r->{json}{user}{passwordHash} && $r->{body} !~ /argon2/,
   'no password hash in the answer');
my $tenant_id = $r->{json}{tenant}{id};

my %bad = (
    'malformed JSON' => [ raw => '{"email": ', 400, qr/Invalid JSON/ ],
    'missing fields' => [ body => {}, 400,
        qr/tenantName should not be empty.*email should not be empty/ ],
    'unknown field' => [ body => { tenantName => 'X Co', name => 'X',
        email => 'x@x.test', password => 'longenough', isAdmin => 1 }, 400,
        qr/property isAdmin should not exist/ ],
    'wrong types' => [ body => { tenantName => 5, name => [], email => 'xyz',
        password => 'short' }, 400,
        qr/tenantName must be a string.*name must be a string.*email must be an email.*password must be longer than or equal to 8/ ],
    'not an object' => [ raw => '[1,2,3]', 400,
        qr/the body must be a JSON object/ ],
    'duplicate email' => [ body => { tenantName => 'Other', name => 'O',
        email => uc($email), password => 'longenough' }, 409,
        qr/email is already registered/ ],
    'duplicate slug' => [ body => { tenantName => 'Other', slug => $slug,
        name => 'O', email => uniq() . '@o.test', password => 'longenough' },
        409, qr/slug is already taken/ ],
);
for my $case (sort keys %bad) {
    my ($kind, $payload, $status, $re) = @{ $bad{$case} };
    my $res = api($t, 'POST', '/api/v1/auth/register', $kind => $payload);
    is($res->{status}, $status, "register, $case: $status");
    like(json_of($res->{json}{message}), $re, "register, $case: says why");
}

$r = api($t, 'POST', '/api/v1/auth/register', raw => 'x' x (2 * 1024 * 1024));
is($r->{status}, 413, 'a 2 MB body: 413');
is($r->{json}{statusCode}, 413, '... in the JSON error shape');

is(psql("SELECT count(*) FROM tenants WHERE name = 'Other'"), '0',
   'nothing of the refused registrations was written');

# --- pending: no login yet
$r = api($t, 'POST', '/api/v1/auth/login',
         body => { email => $email, password => 'correct horse battery' });
is($r->{status}, 403, 'login while pending: 403');
is($r->{json}{message}, 'Tenant is pending approval', '... and why');

# --- the superadmin sees and approves it
$r = api($t, 'GET', '/api/v1/tenants?status=pending&limit=100',
         token => $root->{accessToken});
is($r->{status}, 200, 'superadmin lists pending tenants');
ok((grep { $_->{id} eq $tenant_id } @{ $r->{json}{data} }),
   'the new tenant is among them');

$r = api($t, 'PATCH', "/api/v1/tenants/$tenant_id",
         body => { status => 'pending' }, token => $root->{accessToken});
is($r->{status}, 400, 'back to pending is not a transition');

$r = api($t, 'PATCH', "/api/v1/tenants/$tenant_id",
         body => { status => 'active' }, token => $root->{accessToken});
is($r->{status}, 200, 'approve: 200');
is($r->{json}{status}, 'active', 'the tenant is active');
is(psql("SELECT status FROM tenants WHERE id = '$tenant_id'"), 'active',
   '... in the database');

$r = api($t, 'PATCH', '/api/v1/tenants/00000000-0000-4000-8000-000000000000',
         body => { status => 'active' }, token => $root->{accessToken});
is($r->{status}, 404, 'an unknown tenant: 404');
$r = api($t, 'GET', '/api/v1/tenants/not-a-uuid',
         token => $root->{accessToken});
is($r->{status}, 400, 'a malformed id: 400');

# --- login, me
my $admin = login($t, $email, 'correct horse battery');
ok($admin->{accessToken} && $admin->{refreshToken}, 'admin logs in');
is($admin->{expiresIn}, 900, 'access tokens live 15 minutes');
is($admin->{user}{tenantId}, $tenant_id, 'the token is for its tenant');

$r = api($t, 'GET', '/api/v1/auth/me', token => $admin->{accessToken});
is($r->{status}, 200, 'me: 200');
is($r->{json}{tenant}{slug}, $slug, 'me: with the tenant');
is($r->{json}{email}, $email, 'me: the email');

my ($hdr, $payload) = split /\./, $admin->{accessToken};
my $claims = JSON::PP->new->decode(
    MIME::Base64::decode_base64url($payload));
is_deeply([ sort keys %$claims ], [qw(exp iat role tenantId userId)],
          'claims: userId, tenantId, role, iat, exp');
is($claims->{exp} - $claims->{iat}, 900, 'exp is iat + 15 min');

# --- wrong passwords and unknown users look the same
for my $try ([ $email, 'wrong password' ],
             [ uniq() . '@nobody.test', 'whatever1' ]) {
    $r = api($t, 'POST', '/api/v1/auth/login',
             body => { email => $try->[0], password => $try->[1] });
    is($r->{status}, 401, "bad login ($try->[0]): 401");
    is($r->{json}{message}, 'Invalid credentials', '... one message for both');
}

# --- roles: a tenant admin is not a platform admin
$r = api($t, 'GET', '/api/v1/tenants', token => $admin->{accessToken});
is($r->{status}, 403, 'admin listing tenants: 403');
is($r->{json}{message}, 'Forbidden resource', '... NestJS words');

# --- tokens
my $uid = $admin->{user}{id};
my %tok = (
    'no token' => undef,
    'garbage' => 'not-a-jwt',
    'alg none' => jwt_for({ userId => $uid, tenantId => $tenant_id,
        role => 'SUPERADMIN', iat => time, exp => time + 600 },
        alg => 'none'),
    'another key' => jwt_for({ userId => $uid, tenantId => $tenant_id,
        role => 'ADMIN', iat => time, exp => time + 600 },
        key => 'x' x 32),
    'expired' => jwt_for({ userId => $uid, tenantId => $tenant_id,
        role => 'ADMIN', iat => time - 1000, exp => time - 100 }),
    'unknown role' => jwt_for({ userId => $uid, tenantId => $tenant_id,
        role => 'ROOT', iat => time, exp => time + 600 }),
    'tenant role without tenant' => jwt_for({ userId => $uid,
        role => 'ADMIN', iat => time, exp => time + 600 }),
);
for my $case (sort keys %tok) {
    $r = api($t, 'GET', '/api/v1/auth/me', token => $tok{$case});
    is($r->{status}, 401, "me with $case: 401");
}
$r = api($t, 'GET', '/api/v1/auth/me', token => $tok{expired});
is($r->{json}{message}, 'Token expired', 'an expired token says so');
$r = $t->http('GET', '/api/v1/auth/me', undef,
              headers => { Authorization => "Basic $admin->{accessToken}" });
is($r->{status}, 401, 'not a Bearer: 401');

# a valid signature on a forged claim: a user id not in its tenant
$r = api($t, 'GET', '/api/v1/auth/me', token => jwt_for({
    userId => $root->{user}{id}, tenantId => $tenant_id, role => 'ADMIN',
    iat => time, exp => time + 600 }));
is($r->{status}, 401, "a user id from another tenant's token: 401");

# --- refresh: rotation, reuse detection
my $rt1 = $admin->{refreshToken};
$r = api($t, 'POST', '/api/v1/auth/refresh', body => { refreshToken => $rt1 });
is($r->{status}, 200, 'refresh: 200');
my $rt2 = $r->{json}{refreshToken};
isnt($rt2, $rt1, 'a new refresh token every time');
ok($r->{json}{accessToken}, 'and a new access token');

$r = api($t, 'POST', '/api/v1/auth/refresh', body => { refreshToken => $rt1 });
is($r->{status}, 401, 'the used token again: 401');
like($r->{json}{message}, qr/reuse detected/, '... reuse detected');

$r = api($t, 'POST', '/api/v1/auth/refresh', body => { refreshToken => $rt2 });
is($r->{status}, 401, 'the newest token of that family fails too');

$r = api($t, 'POST', '/api/v1/auth/refresh',
         body => { refreshToken => 'never-issued' });
is($r->{status}, 401, 'an unknown token: 401');
is($r->{json}{message}, 'Invalid refresh token', '... and why');

is(psql("SELECT count(*) FROM refresh_tokens WHERE token_hash = '"
        . Digest::SHA::sha256_hex($rt2) . "'"), '1',
   'only the SHA-256 of a token is stored');
is(psql("SELECT count(*) FROM refresh_tokens WHERE token_hash = '$rt2'"), '0',
   'never the token itself');

# --- logout
my $s = login($t, $email, 'correct horse battery');
$r = api($t, 'POST', '/api/v1/auth/logout',
         body => { refreshToken => $s->{refreshToken} },
         token => $s->{accessToken});
is($r->{status}, 200, 'logout: 200');
$r = api($t, 'POST', '/api/v1/auth/refresh',
         body => { refreshToken => $s->{refreshToken} });
is($r->{status}, 401, 'the logged-out session cannot refresh');

# --- suspension stops logins and refreshes
$s = login($t, $email, 'correct horse battery');
api($t, 'PATCH', "/api/v1/tenants/$tenant_id", body => { status => 'suspended' },
    token => $root->{accessToken});
$r = api($t, 'POST', '/api/v1/auth/login',
         body => { email => $email, password => 'correct horse battery' });
is($r->{status}, 403, 'suspended: login 403');
is($r->{json}{message}, 'Tenant is suspended', '... and why');
$r = api($t, 'POST', '/api/v1/auth/refresh',
         body => { refreshToken => $s->{refreshToken} });
is($r->{status}, 401, 'suspended: refresh 401');
api($t, 'PATCH', "/api/v1/tenants/$tenant_id", body => { status => 'active' },
    token => $root->{accessToken});

# --- audit log: the admin reads their tenant's, never another's
my $other = uniq('other');
api($t, 'POST', '/api/v1/auth/register', body => { tenantName => "Other $other",
    slug => $other, name => 'O', email => "$other\@o.test",
    password => 'longenough' });

$r = api($t, 'GET', '/api/v1/audit-logs?limit=200', token => $admin->{accessToken});
is($r->{status}, 200, 'admin reads the audit log');
my %actions = map { $_->{action} => 1 } @{ $r->{json}{data} };
ok($actions{$_}, "audit has $_") for qw(tenant.registered auth.login
    auth.login_failed auth.refresh_reuse auth.logout tenant.updated);
ok(!(grep { ($_->{tenantId} // '') ne $tenant_id } @{ $r->{json}{data} }),
   "only its own tenant's entries");

$r = api($t, 'GET', "/api/v1/audit-logs?tenantId=$tenant_id",
         token => $root->{accessToken});
is($r->{status}, 200, 'the superadmin reads any tenant\'s');

# --- passwords are hashed off the event loop: logins do not stall others
my @reqs = ((map { build_request('POST', '/api/v1/auth/login',
                 json_of({ email => $email, password => 'correct horse battery' }),
                 headers => { 'Content-Type' => 'application/json' }) } 1 .. 8),
            (map { build_request('GET', '/api/v1/health') } 1 .. 40));
my @res = $t->parallel_requests(\@reqs, timeout => 20);
is(scalar(grep { $_->{status} == 200 } @res), 48, '8 logins and 40 health checks');
my ($slowest_health) = sort { $b <=> $a } map { $_->{elapsed} } @res[8 .. 47];
my ($slowest_login) = sort { $b <=> $a } map { $_->{elapsed} } @res[0 .. 7];
diag("slowest login ${slowest_login}s, slowest health ${slowest_health}s");
cmp_ok($slowest_health, '<', 0.5, 'health never waited behind argon2');

$t->stop;
no_bad_log($t);

done_testing();
