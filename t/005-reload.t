# nginx -s reload under traffic: old workers exit, nothing is dropped, no
# [alert], and PostgreSQL ends with exactly (pool + 1) x workers backends
# of ours: the pool and the job queue's LISTEN connection.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use Orbit::Test;

my $POOL = 3;
my $WORKERS = 2;
my $PER_WORKER = $POOL + 1;    # the job queue listens on one more

sub backends {
    psql("SELECT count(*) FROM pg_stat_activity"
         . " WHERE application_name = 'orbitdesk'");
}

my $t = orbit_nginx(workers => $WORKERS, pool => $POOL);
$t->start;

ok(wait_until(5, sub { backends() == $PER_WORKER * $WORKERS }),
   "$PER_WORKER x $WORKERS backends after start")
    or diag('backends: ' . backends());

my @old = $t->worker_pids;

# traffic: a child keeps asking for health and counts what was not 200
my $out = $t->servroot . '/traffic.out';
my $pid = fork // die "fork: $!";
if ($pid == 0) {
    my ($n, $bad) = (0, 0);
    my $end = time + 3;
    while (time < $end) {
        my $r = $t->http_get('/api/v1/health', timeout => 5);
        $n++;
        $bad++ unless $r->{status} == 200;
    }
    open my $fh, '>', $out or die;
    print $fh "$n $bad\n";
    close $fh;
    exit 0;
}

sleep 0.5;
ok($t->reload, 'first reload') or diag($t->reload_error);
sleep 0.5;
ok($t->reload, 'second reload, still under traffic') or diag($t->reload_error);
waitpid $pid, 0;

open my $fh, '<', $out or die "no traffic result";
my ($n, $bad) = split ' ', <$fh>;
cmp_ok($n, '>', 50, "traffic flowed during the reloads ($n requests)");
is($bad, 0, 'not one request failed');

my %old = map { $_ => 1 } @old;
ok(wait_until(5, sub { !grep { $old{$_} } $t->all_worker_pids }),
   'the old workers exited');
ok(wait_until(5, sub { !grep { -e "/proc/$_" } @old }),
   'their processes are gone (reaped by the master)');

ok(wait_until(5, sub { backends() == $PER_WORKER * $WORKERS }),
   'backends back to the pool size (+1) per worker')
    or diag('backends: ' . backends());

is($t->http_get('/api/v1/health')->{status}, 200, 'new workers serve');

$t->stop;
ok(wait_until(5, sub { backends() == 0 }),
   'no backend left once nginx stopped') or diag('backends: ' . backends());
no_bad_log($t);

done_testing();
