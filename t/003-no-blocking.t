# A worker never blocks: with one worker, a request waiting on a 2-second
# statement does not delay 100 others on the same worker.

use strict;
use warnings;
use Test::More;
use Orbit::Nginx qw(build_request);
use Orbit::Test;

my $t = orbit_nginx(
    workers => 1,
    pool    => 4,
    config  => 'location = /slow { orbit_test_sql "SELECT pg_sleep(2)"; }',
);
$t->start;

# warm the pool: every connection is up before the clock starts
ok(wait_until(5, sub { $t->http_get('/api/v1/health')->{status} == 200 }),
   'health is up');

my @reqs = (build_request('GET', '/slow'),
            map { build_request('GET', '/api/v1/health') } 1 .. 100);
my @res = $t->parallel_requests(\@reqs, timeout => 10);

my $slow = shift @res;
is($slow->{status}, 200, 'the slow statement completes');
cmp_ok($slow->{elapsed}, '>=', 1.9, 'and it did take its 2 seconds');

my @ok = grep { $_->{status} == 200 && $_->{body} =~ /"status":"ok"/ } @res;
is(scalar @ok, 100, 'all 100 health requests answered 200 ok');

my ($max) = sort { $b <=> $a } map { $_->{elapsed} } @res;
cmp_ok($max, '<', 1.0, 'the last of them finished well under a second')
    or diag("slowest health request: ${max}s");

$t->stop;
no_bad_log($t);

done_testing();
