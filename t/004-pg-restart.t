# PostgreSQL goes away and comes back: health answers 503 at once while it
# is down (no hang), 200 within 2 s of its return, and no worker crashes.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use Orbit::Test;

my $t = orbit_nginx(workers => 2, pool => 3,
                    config => 'location = /q { orbit_test_sql "SELECT 7"; }');
$t->start;

ok(wait_until(5, sub { $t->http_get('/api/v1/health')->{status} == 200 }),
   'health 200 while PostgreSQL is up');
ok(wait_until(5, sub { $t->worker_pids == 2 }), 'both workers are up');
my @workers = sort $t->worker_pids;

pg_service('stop');

my $t0 = time;
my $res = $t->http_get('/api/v1/health', timeout => 5);
my $took = time - $t0;
is($res->{status}, 503, 'health 503 while PostgreSQL is down');
like($res->{body}, qr/^\{"status":"error","postgres":\{"ok":false,"error":"postgres unavailable: /,
     'the failing part is named');
like($res->{body}, qr/"redis":\{"ok":true/, 'redis is still reported ok');
cmp_ok($took, '<', 0.5, 'promptly, no hang') or diag("took ${took}s");

# every request while it is down fails fast too, over several attempts
my $slowest = 0;
for (1 .. 10) {
    my $s = time;
    my $r = $t->http_get('/q', timeout => 5);
    $slowest = time - $s if time - $s > $slowest;
    die "unexpected $r->{status}" unless $r->{status} == 503;
}
cmp_ok($slowest, '<', 0.5, 'queries fail fast while it is down');

sleep 1.5;    # let the reconnect backoff grow
pg_service('start');
my $back = time;

my $up = wait_until(5, sub { $t->http_get('/api/v1/health')->{status} == 200 });
ok(defined $up, 'health back to 200');
cmp_ok(time - $back, '<', 2.0, 'within 2 s of PostgreSQL being back');

is($t->http_get('/q')->{body}, '7', 'queries work again');
is_deeply([sort $t->worker_pids], \@workers, 'no worker died or restarted');

$t->stop;
no_bad_log($t);

done_testing();
