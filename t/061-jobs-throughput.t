# What the job queue costs: jobs a second through it with a handler that
# does nothing ("test.noop": claim, run, record the outcome), beside
# pgbench's single-row INSERT on the same PostgreSQL, one after the other
# in this run.  The figures are printed (diag); the assertion is a floor
# far below them, to catch a queue that went per job (a claim, or worse a
# poll, for each).  Skipped under valgrind.
#
#   jobs: 2 workers, pool=8, orbit_jobs_concurrency 32; 20,000 jobs in
#         one INSERT, timed from the INSERT to the last one done
#   pgbench: -n -M prepared -c 8 -j 2 -T 5, "INSERT INTO t (x) VALUES (1)"

use strict;
use warnings;
use Test::More;
use File::Temp ();
use Time::HiRes qw(time sleep);
use Orbit::Test;

plan skip_all => 'timing figures mean nothing under valgrind'
    if Orbit::Nginx::valgrind_enabled();

my $N = 20000;

# user + system clock ticks of these processes
sub cpu {
    my $ticks = 0;
    for my $pid (@_) {
        open my $fh, '<', "/proc/$pid/stat" or next;
        my @f = split ' ', (<$fh> =~ s/^.*\) //r);
        $ticks += $f[11] + $f[12];
    }
    return $ticks;
}

psql("DELETE FROM jobs WHERE kind = 'test.noop'");

my $t = orbit_nginx(workers => 2, http_config => <<"_EOC_");
    orbit_postgres "$ENV{TEST_NGINX_PG_DSN}" pool=8;
    orbit_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};
    orbit_secrets $ENV{TEST_NGINX_SECRETS};
    orbit_jobs_concurrency 32;
_EOC_
$t->start;
ok(wait_until(10, sub { $t->worker_pids == 2 }), 'two workers');
sleep 0.5;    # their pools up

my $cpu0 = cpu($t->worker_pids);
my $t0 = time;
psql("INSERT INTO jobs (kind) SELECT 'test.noop'"
     . " FROM generate_series(1, $N)");
ok(wait_until(120, sub {
       psql("SELECT count(*) FROM jobs WHERE kind = 'test.noop'"
            . " AND status = 'done'") == $N }), "$N jobs done");
my $secs = time - $t0;
my $jobs_s = $N / $secs;
my $cpu_s = (cpu($t->worker_pids) - $cpu0) / 100;

is(psql("SELECT count(*) FROM jobs WHERE kind = 'test.noop'"
        . " AND (status <> 'done' OR attempts <> 1)"), 0,
   'each ran once');

$t->stop;
psql("DELETE FROM jobs WHERE kind = 'test.noop'");

# pgbench's single-row insert, same server, same concurrency as the pools
psql("CREATE TABLE IF NOT EXISTS bench_insert (x integer)");
my $script = File::Temp->new(SUFFIX => '.sql');
print {$script} "INSERT INTO bench_insert (x) VALUES (1);\n";
close $script;

open my $fh, '-|', 'pgbench', '-n', '-M', 'prepared', '-c', '8', '-j', '2',
    '-T', '5', '-f', $script->filename, '-h', '127.0.0.1',
    '-p', $ENV{TEST_NGINX_PG_PORT}, '-U', 'postgres', 'orbit'
    or die "pgbench: $!";
my $out = do { local $/; <$fh> };
close $fh;
my ($tps) = $out =~ /tps = ([\d.]+)/;
ok($tps, 'pgbench ran') or diag($out);
psql("DROP TABLE bench_insert");

diag(sprintf "jobs_per_s: %.0f", $jobs_s);
diag(sprintf "pgbench_insert_tps: %.0f", $tps // 0);
diag(sprintf "jobs_vs_pgbench_insert: %.2f", $jobs_s / ($tps || 1));
diag(sprintf "jobs_nginx_cpu_share: %.2f (worker CPU seconds / wall"
     . " seconds, of 2 cores)", $cpu_s / $secs);

cmp_ok($jobs_s, '>', 0.1 * ($tps // 0),
       'the queue runs at least a tenth of single-row inserts');

no_bad_log($t);

done_testing();
