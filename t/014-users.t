# /api/v1/users: a tenant's team.  Admins manage everyone, managers
# manage agents, nobody escalates, deactivation ends sessions, and no
# tenant reaches another's users.

use strict;
use warnings;
use Test::More;
use Orbit::Test;

my $t = orbit_nginx(workers => 1, pool => 4);
$t->start;

my ($root_email, $root_pw) = make_superadmin();
my $root = login($t, $root_email, $root_pw);

# two approved tenants, each with its admin
sub tenant {
    my $slug = uniq('team');
    my $email = "$slug\@team.test";
    my $r = api($t, 'POST', '/api/v1/auth/register', body => {
        tenantName => "Team $slug", slug => $slug, name => 'Boss',
        email => $email, password => 'boss-password' });
    die "register: $r->{body}" unless $r->{status} == 201;
    api($t, 'PATCH', "/api/v1/tenants/$r->{json}{tenant}{id}",
        body => { status => 'active' }, token => $root->{accessToken});
    return (login($t, $email, 'boss-password'), $r->{json}{tenant}{id});
}

my ($admin, $tid) = tenant();
my ($other_admin, $other_tid) = tenant();
my $A = $admin->{accessToken};

# --- invite: with a password, and without (a temporary one, shown once)
my $mgr_email = uniq('mgr') . '@team.test';
my $r = api($t, 'POST', '/api/v1/users', token => $A, body => {
    email => $mgr_email, name => 'Mia Manager', role => 'MANAGER',
    password => 'manager-pass' });
is($r->{status}, 201, 'admin invites a manager');
is($r->{json}{tenantId}, $tid, 'into their own tenant');
my $mgr_id = $r->{json}{id};

my $agent_email = uniq('agent') . '@team.test';
$r = api($t, 'POST', '/api/v1/users', token => $A, body => {
    email => $agent_email, name => 'Al Agent', role => 'AGENT' });
is($r->{status}, 201, 'admin invites an agent without a password');
my $temp = $r->{json}{temporaryPassword};
like($temp // '', qr/^[A-Za-z0-9_-]{24}$/, 'a temporary password, once');
my $agent_id = $r->{json}{id};

my $agent = login($t, $agent_email, $temp);
is($agent->{user}{role}, 'AGENT', 'the agent logs in with it');
my $mgr = login($t, $mgr_email, 'manager-pass');

$r = api($t, 'GET', "/api/v1/users/$agent_id", token => $A);
ok(!exists $r->{json}{temporaryPassword} && $r->{body} !~ /argon2|password/i,
   'never shown again, no hash either');

# --- bad input
$r = api($t, 'POST', '/api/v1/users', token => $A, body => {
    email => 'nope', name => '', role => 'ROOT', isAdmin => 1 });
is($r->{status}, 400, 'bad invite: 400');
like(json_of($r->{json}{message}),
     qr/property isAdmin should not exist.*email must be an email.*name should not be empty.*role must be one of/,
     'every problem named');
$r = api($t, 'POST', '/api/v1/users', token => $A, body => {
    email => uc($agent_email), name => 'Dup', role => 'AGENT' });
is($r->{status}, 409, 'an address already registered: 409');

# --- roles
$r = api($t, 'POST', '/api/v1/users', token => $mgr->{accessToken}, body => {
    email => uniq() . '@team.test', name => 'X', role => 'ADMIN' });
is($r->{status}, 403, 'a manager cannot create an admin');
$r = api($t, 'POST', '/api/v1/users', token => $mgr->{accessToken}, body => {
    email => uniq() . '@team.test', name => 'X', role => 'MANAGER' });
is($r->{status}, 403, '... nor a manager');
$r = api($t, 'POST', '/api/v1/users', token => $mgr->{accessToken}, body => {
    email => uniq() . '@team.test', name => 'Newbie', role => 'AGENT',
    password => 'agent-pass-1' });
is($r->{status}, 201, 'a manager invites an agent');

$r = api($t, 'GET', '/api/v1/users', token => $agent->{accessToken});
is($r->{status}, 403, 'an agent cannot list the team');
$r = api($t, 'PATCH', "/api/v1/users/$mgr_id", token => $mgr->{accessToken},
         body => { role => 'ADMIN' });
is($r->{status}, 403, 'a manager cannot promote themselves');
$r = api($t, 'PATCH', "/api/v1/users/$agent_id", token => $mgr->{accessToken},
         body => { role => 'MANAGER' });
is($r->{status}, 403, 'a manager cannot promote an agent to manager');
$r = api($t, 'PATCH', "/api/v1/users/$mgr_id", token => $A,
         body => { role => 'AGENT' });
is($r->{status}, 200, 'an admin changes a role');
is($r->{json}{role}, 'AGENT', '... to agent');
$r = api($t, 'PATCH', "/api/v1/users/$admin->{user}{id}", token => $A,
         body => { isActive => JSON::PP::false });
is($r->{status}, 403, 'an admin cannot switch themselves off');

# --- list: the roster, paged
$r = api($t, 'GET', '/api/v1/users?limit=2', token => $A);
is($r->{status}, 200, 'list');
is(scalar @{ $r->{json}{data} }, 2, 'limit 2');
ok($r->{json}{nextCursor}, 'with a cursor');
my @ids = map { $_->{id} } @{ $r->{json}{data} };
$r = api($t, 'GET', "/api/v1/users?limit=10&cursor=$r->{json}{nextCursor}",
         token => $A);
push @ids, map { $_->{id} } @{ $r->{json}{data} };
is(scalar @ids, 4, 'all four, once each');
my %seen;
ok(!(grep { $seen{$_}++ } @ids), 'no duplicates across pages');
$r = api($t, 'GET', '/api/v1/users?role=AGENT', token => $A);
ok(!(grep { $_->{role} ne 'AGENT' } @{ $r->{json}{data} }), 'role filter');

# --- deactivation ends sessions
$r = api($t, 'PATCH', "/api/v1/users/$agent_id", token => $A,
         body => { isActive => JSON::PP::false });
is($r->{status}, 200, 'deactivate an agent');
$r = api($t, 'POST', '/api/v1/auth/refresh',
         body => { refreshToken => $agent->{refreshToken} });
is($r->{status}, 401, 'its refresh token no longer works');
$r = api($t, 'POST', '/api/v1/auth/login',
         body => { email => $agent_email, password => $temp });
is($r->{status}, 403, 'nor does login');

# --- isolation: another tenant's users do not exist for us
for my $call (['GET', "/api/v1/users/$agent_id"],
              ['PATCH', "/api/v1/users/$agent_id", { name => 'Mine now' }]) {
    $r = api($t, $call->[0], $call->[1], token => $other_admin->{accessToken},
             ($call->[2] ? (body => $call->[2]) : ()));
    is($r->{status}, 404, "other tenant's admin, $call->[0] a user: 404");
}
$r = api($t, 'GET', '/api/v1/users', token => $other_admin->{accessToken});
ok(!(grep { $_->{tenantId} ne $other_tid } @{ $r->{json}{data} }),
   'a list holds only the caller\'s tenant');
is(psql("SELECT name FROM users WHERE id = '$agent_id'"), 'Al Agent',
   'nothing was changed by the other tenant');

# --- the audit log saw it all
$r = api($t, 'GET', '/api/v1/audit-logs?limit=100', token => $A);
my %actions = map { $_->{action} => 1 } @{ $r->{json}{data} };
ok($actions{$_}, "audit has $_")
    for qw(user.invited user.role_changed user.deactivated);

$t->stop;
no_bad_log($t);

done_testing();
