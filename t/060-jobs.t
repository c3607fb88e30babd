# The durable job queue (src/jobs): jobs enqueued by SQL INSERT, run by the
# "test.http" kind of the test module (ngx_modules/ngx_http_orbit_test_jobs.c:
# POSTs the payload to a peer, retries on 5xx / 429 / no answer, fails on
# other 4xx, records each outcome in test_job_effects in the outcome's own
# statement), against t/node/job-peer.js, which records every request and
# answers as the payload says.
#
# Two workers, a 3 s lease (a run is cut off at 2.4 s), a 3 s poll, a
# 200 ms backoff, worker_shutdown_timeout 1s.  Times stretch under
# valgrind.

use strict;
use warnings;
use Test::More;
use IO::Socket::INET ();
use JSON::PP ();
use Time::HiRes qw(time sleep);
use Orbit::Test;
use Orbit::Node;

my $SLOW = Orbit::Nginx::valgrind_slowdown();
my $LEASE = 3 * $SLOW;
my $JSON = JSON::PP->new->canonical;

my $peer = node_server('job-peer.js', timeout => 3600);
my $URL = 'http://127.0.0.1:' . $peer->port . '/send';

# bound, not listening: a connect is refused at once
my $refuse = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                   Proto => 'tcp', ReuseAddr => 1)
    or die "cannot bind: $!";


# --- helpers ---------------------------------------------------------------

# the peer's requests so far, of one job or all
sub requests {
    my ($id) = @_;
    1 while $peer->_pump(time);    # read what it printed, do not wait
    return grep { $_->{event} eq 'request'
                  && (!defined $id || ($_->{job} // '') eq $id) }
           @{ $peer->events };
}

# a test.http job; returns its id
sub enqueue {
    my ($payload, %o) = @_;
    my $json = $JSON->encode({ url => $URL, timeout => 5000 * $SLOW,
                               %$payload });
    my $max = $o{max_attempts} // 8;
    return psql("INSERT INTO jobs (kind, payload, max_attempts)"
                . " VALUES ('test.http', '$json', $max) RETURNING id");
}

sub job {
    my ($id) = @_;
    my ($status, $attempts, $error, $by) = split /\|/,
        psql("SELECT status || '|' || attempts || '|'"
             . " || coalesce(last_error, '') || '|' || coalesce(locked_by, '')"
             . " FROM jobs WHERE id = $id"), -1;
    return { status => $status // '', attempts => $attempts // 0,
             error => $error // '', by => $by // '' };
}

# the effects of a job, "attempt:outcome:http" in order
sub effects {
    my ($id) = @_;
    return split /\n/, psql("SELECT attempt || ':' || outcome || ':'"
                            . " || http_status FROM test_job_effects"
                            . " WHERE job_id = $id ORDER BY attempt");
}

sub ended {
    my (@ids) = @_;
    my $list = join ',', @ids;
    return psql("SELECT count(*) FROM jobs WHERE id IN ($list)"
                . " AND status IN ('done', 'failed')") == @ids;
}

sub wait_ended {
    my ($secs, @ids) = @_;
    return wait_until($secs * $SLOW, sub { requests(); ended(@ids) });
}

sub worker_cpu {
    my $ticks = 0;
    for my $pid ($_[0]->worker_pids) {
        open my $fh, '<', "/proc/$pid/stat" or next;
        my @f = split ' ', (<$fh> =~ s/^.*\) //r);
        $ticks += $f[11] + $f[12];
    }
    return $ticks;
}


# --- setup -----------------------------------------------------------------

psql("CREATE TABLE IF NOT EXISTS test_job_effects (job_id bigint,"
     . " attempt integer, outcome text, http_status integer,"
     . " at timestamptz NOT NULL DEFAULT now())");
psql("ALTER TABLE test_job_effects OWNER TO orbit");
psql("TRUNCATE test_job_effects");

# the maintenance job runs once the queue starts: its purge and its row
psql("DELETE FROM jobs WHERE kind IN ('maintenance', 'test.http',"
     . " 'nobody.home')");
sub ended_long_ago {
    my ($status, $days) = @_;
    return psql("INSERT INTO jobs (kind, status, updated_at) VALUES"
                . " ('old.thing', '$status', now() - interval '$days days')"
                . " RETURNING id");
}
my $old_done = ended_long_ago('done', 8);
my $new_done = ended_long_ago('done', 6);
my $old_failed = ended_long_ago('failed', 8);

# kinds nobody handles wait untouched
my $unhandled = psql("WITH i AS (INSERT INTO jobs (kind, payload) VALUES"
                     . " ('flow.trigger', '{}'), ('nobody.home', '{}')"
                     . " RETURNING id) SELECT string_agg(id::text, ',')"
                     . " FROM i");

my $t = orbit_nginx(workers => 2,
                    main_config => "worker_shutdown_timeout ${SLOW}s;",
                    http_config => <<"_EOC_");
    orbit_postgres "$ENV{TEST_NGINX_PG_DSN}" pool=4;
    orbit_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};
    orbit_secrets $ENV{TEST_NGINX_SECRETS};
    orbit_jobs on;
    orbit_jobs_concurrency 8;
    orbit_jobs_lease ${LEASE}s;
    orbit_jobs_poll 3s;
    orbit_jobs_backoff 200ms max=2s;
    orbit_jobs_keep 7d;
_EOC_
$t->start;
ok(wait_until(10 * $SLOW, sub { $t->worker_pids == 2 }), 'two workers');


# --- maintenance -----------------------------------------------------------

ok(wait_until(10 * $SLOW, sub {
       psql("SELECT count(*) FROM jobs WHERE kind = 'maintenance'"
            . " AND status = 'queued' AND attempts = 0"
            . " AND run_at > now() + interval '55 minutes'") == 1 }),
   'the maintenance job ran at start and is due again in an hour');
is(psql("SELECT count(*) FROM jobs WHERE kind = 'maintenance'"),
   1, 'one maintenance job, though both workers enqueued it');
is(psql("SELECT count(*) FROM jobs WHERE id = $old_done"), 0,
   'it purged a done job older than orbit_jobs_keep');
is(psql("SELECT count(*) FROM jobs WHERE id IN ($new_done, $old_failed)"),
   2, 'and kept a younger done job and an old failed one');


# --- one job, woken by NOTIFY ----------------------------------------------

my @latency;
my @one;
for my $n (1 .. 5) {
    my $t0 = time;
    my $id = enqueue({ n => $n });
    push @one, $id;
    wait_until(5 * $SLOW, sub { requests($id) });
    my ($r) = requests($id);
    push @latency, $r ? $r->{t} / 1000 - $t0 : 99;
}
my ($slowest) = sort { $b <=> $a } @latency;
cmp_ok($slowest, '<', 0.5 * $SLOW,
       'a job inserted is picked up at once, not at the 3 s poll')
    or diag("latencies: @latency");

ok(wait_ended(5, @one), 'the five jobs ended');
is_deeply([map { job($_)->{status} } @one], [('done') x 5], 'done');
is_deeply([map { scalar requests($_) } @one], [(1) x 5],
          'the peer got each once');
is_deeply([map { [effects($_)] } @one], [(['1:done:200']) x 5],
          'each effect committed once, with its outcome');


# --- 500, then 200 ----------------------------------------------------------

my $flaky = enqueue({ answers => [500, 200] });
ok(wait_ended(10, $flaky), '500 then 200: ended');
my $j = job($flaky);
is($j->{status}, 'done', 'done on the second attempt');
is($j->{attempts}, 2, 'two attempts');
like($j->{error}, qr/^HTTP 500: refused by the peer/,
     'the first failure stays as last_error');
my @r = requests($flaky);
is(scalar @r, 2, 'the peer got it twice');
my $gap = @r == 2 ? ($r[1]{t} - $r[0]{t}) / 1000 : 0;
cmp_ok($gap, '>=', 0.1, 'after a backoff (200 ms base, half of it jitter)');
cmp_ok($gap, '<', 1.5 * $SLOW, 'not much after it') or diag("gap ${gap}s");
is_deeply([effects($flaky)], ['1:retry:500', '2:done:200'],
          'each attempt\'s effect, with its outcome');


# --- 429 with Retry-After ---------------------------------------------------

my $limited = enqueue({ answers => [429, 200], retryAfter => 2 });
ok(wait_ended(10, $limited), '429: ended');
is(job($limited)->{status}, 'done', 'done on the second attempt');
@r = requests($limited);
$gap = @r == 2 ? ($r[1]{t} - $r[0]{t}) / 1000 : 0;
cmp_ok($gap, '>=', 1.95, 'Retry-After: 2 honoured (the backoff is 200 ms)')
    or diag("gap ${gap}s");
cmp_ok($gap, '<', 3.5 * $SLOW, 'and not much later');


# --- 400: failed for good ---------------------------------------------------

my $bad = enqueue({ answers => [400] });
ok(wait_ended(10, $bad), '400: ended');
$j = job($bad);
is($j->{status}, 'failed', 'failed');
is($j->{error}, 'HTTP 400: refused by the peer', 'with the reason');
sleep 1;
is(scalar requests($bad), 1, 'never retried');
is_deeply([effects($bad)], ['1:failed:400'], 'its effect, once');


# --- retries run out --------------------------------------------------------

my $down = enqueue({ answers => [503] }, max_attempts => 3);
ok(wait_ended(15, $down), 'always 503: ended');
$j = job($down);
is($j->{status}, 'failed', 'failed after max_attempts');
is($j->{attempts}, 3, 'three attempts');
like($j->{error}, qr/^HTTP 503/, 'the last error');
is(scalar requests($down), 3, 'the peer got three');

my $refused = psql("INSERT INTO jobs (kind, payload, max_attempts)"
                   . " VALUES ('test.http', '{\"url\":\"http://127.0.0.1:"
                   . $refuse->sockport . "/\"}', 2) RETURNING id");
ok(wait_ended(10, $refused), 'connection refused: ended');
$j = job($refused);
is("$j->{status} $j->{attempts}", 'failed 2', 'retried, then failed');
like($j->{error}, qr/connect/i, 'saying it could not connect');


# --- an effect that fails ---------------------------------------------------

my $broken = enqueue({ effect => 'broken' });
ok(wait_ended(10, $broken), 'broken effect: ended');
$j = job($broken);
is($j->{status}, 'failed', 'the job fails: repeating it would send again');
like($j->{error},
     qr/^effect failed: relation "test_job_effects_missing" does not exist/,
     'saying why');
sleep 0.5;
is(scalar requests($broken), 1, 'sent once');


# --- a claim taken over: no completion, no effect ---------------------------

my $stolen = enqueue({ delays => [1500 * $SLOW, 0] });
ok(wait_until(5 * $SLOW, sub { requests($stolen) }), 'running');
psql("UPDATE jobs SET locked_by = 'thief', attempts = attempts + 1,"
     . " locked_until = now() + interval '$LEASE seconds'"
     . " WHERE id = $stolen");
my $off = $t->error_log_size;
ok(wait_until(5 * $SLOW, sub {
       $t->error_log_since($off) =~ /claim was lost.*job: $stolen /m }),
   'the first worker\'s outcome was refused');
$j = job($stolen);
is("$j->{status} $j->{by}", 'running thief', 'the row is the thief\'s');
is_deeply([effects($stolen)], [], 'and the effect rolled back with it');
ok(wait_ended(10, $stolen), 'the thief "died": its lease ran out');
$j = job($stolen);
is("$j->{status} $j->{attempts}", 'done 3', 'run again, done');
is_deeply([effects($stolen)], ['3:done:200'], 'one effect, the last run\'s');


# --- a run longer than its time is cut off and retried ----------------------

my $slow = enqueue({ delays => [int((0.8 * $LEASE + 0.6) * 1000), 0],
                     timeout => 10000 * $SLOW });
ok(wait_ended(15, $slow), 'slow: ended');
$j = job($slow);
is("$j->{status} $j->{attempts} $j->{error}", 'done 2 timed out',
   'cut off at 4/5 of the lease, then done');
is_deeply([effects($slow)], ['2:done:200'], 'no effect from the cut run');


# --- 200 jobs, two workers ---------------------------------------------------

my $scans = psql("SELECT idx_scan FROM pg_stat_user_indexes"
                 . " WHERE indexrelname = 'jobs_due_idx'");
my @burst = split /\n/, psql(
    "INSERT INTO jobs (kind, payload) SELECT 'test.http',"
    . " jsonb_build_object('url', '$URL', 'n', n, 'delay', 20)"
    . " FROM generate_series(1, 200) n RETURNING id");
is(scalar @burst, 200, '200 jobs in one INSERT');
ok(wait_ended(30, @burst), 'all ended');
my $list = join ',', @burst;
is(psql("SELECT count(*) FROM jobs WHERE id IN ($list) AND status = 'done'"),
   200, 'all done');
my %seen;
$seen{ $_->{job} }++ for requests();
is(scalar(grep { ($seen{$_} // 0) == 1 } @burst), 200,
   'the peer got each exactly once');
is(psql("SELECT count(*) FROM test_job_effects WHERE job_id IN ($list)"
        . " AND outcome = 'done'"), 200, 'one effect each');
is(psql("SELECT count(DISTINCT locked_by) FROM jobs WHERE id IN ($list)"),
   2, 'both workers took part');
# a backend reports its statistics once idle for a while (PostgreSQL 15):
# the claiming connections may not have yet
ok(wait_until(15, sub {
       psql("SELECT idx_scan FROM pg_stat_user_indexes"
            . " WHERE indexrelname = 'jobs_due_idx'") > $scans }),
   'claims read jobs_due_idx');


# --- quiet -------------------------------------------------------------------

my $cpu = worker_cpu($t);
sleep 2;
cmp_ok(worker_cpu($t) - $cpu, '<=', 5,
       'idle workers use no CPU (no busy loop)');


# --- SIGKILL of a worker with jobs in flight ---------------------------------

my $n0 = requests();
my @inflight = map { enqueue({ n => $_, delays => [1500 * $SLOW, 0] }) }
               1 .. 16;
ok(wait_until(5 * $SLOW, sub { requests() >= $n0 + 16 }),
   '16 jobs in flight');
my ($victim) = psql("SELECT locked_by FROM jobs WHERE id IN ("
                    . join(',', @inflight) . ") AND status = 'running'"
                    . " LIMIT 1") =~ m{/(\d+)$};
ok($victim && kill('KILL', $victim), "SIGKILL worker $victim");
my $killed_at = time;
ok(wait_ended($LEASE + 10, @inflight), 'every job ended');
$list = join ',', @inflight;
is(psql("SELECT count(*) FROM jobs WHERE id IN ($list) AND status = 'done'"),
   16, 'all done, none lost');
is(psql("SELECT count(*) FROM test_job_effects WHERE job_id IN ($list)"
        . " AND outcome = 'done'"), 16, 'one effect each');
my @again = split /\n/, psql("SELECT id FROM jobs WHERE id IN ($list)"
                             . " AND attempts = 2");
ok(@again > 0 && @again < 16, scalar(@again) . ' jobs of the killed worker'
   . ' ran a second time');
my @reruns = map { (requests($_))[1] } @again;
my ($first_rerun) = sort { $a <=> $b } map { $_ ? $_->{t} / 1000 : 0 } @reruns;
cmp_ok($first_rerun // 0, '>=', $killed_at + 1.0,
       'after the lease, not at once');
ok(wait_until(10 * $SLOW, sub { $t->worker_pids == 2 }),
   'the master started another worker');


# --- a storm of notifications ------------------------------------------------

# 1,000 NOTIFYs of a kind we handle, each its own transaction, in one
# message: they reach the workers together.  The workers count what they
# hear and what they claim, and say so when they exit (at the reload).
psql(join '', map { "BEGIN; SELECT pg_notify('orbit_jobs', 'test.http');"
                    . " COMMIT;" } 1 .. 1000);
sleep 0.5;


# --- reload in the middle of a burst -----------------------------------------

$n0 = requests();
my @reload = map { enqueue({ n => $_, delay => 300 }) } 1 .. 60;
ok(wait_until(5 * $SLOW, sub { requests() >= $n0 + 10 }), 'burst started');
$off = $t->error_log_size;
ok($t->reload, 'reloaded mid-burst') or diag($t->reload_error);
ok(wait_ended(30, @reload), 'every job ended');
$list = join ',', @reload;
is(psql("SELECT count(*) FROM jobs WHERE id IN ($list) AND status = 'done'"),
   60, 'all done');
%seen = ();
$seen{ $_->{job} }++ for requests();
is(scalar(grep { ($seen{$_} // 0) == 1 } @reload), 60,
   'each sent exactly once: the old workers finished what they had');
is(psql("SELECT count(*) FROM test_job_effects WHERE job_id IN ($list)"),
   60, 'one effect each');
unlike($t->error_log_since($off), qr/cut off|timed out/,
       'nothing was cut off');

my @counts = $t->error_log_since($off)
             =~ /orbit jobs: (\d+) notifications, (\d+) claims/g;
my @stormed = grep { $counts[2 * $_] >= 1000 } 0 .. $#counts / 2;
ok(@stormed, 'an old worker heard the storm of notifications')
    or diag("exit counts: @counts");
ok(!grep({ $counts[2 * $_ + 1] > 200 } @stormed),
   'and claimed a few times, not once each')
    or diag("exit counts: @counts");


# --- worker_shutdown_timeout cuts a running job off ---------------------------

my $long = enqueue({ delays => [1800 * $SLOW, 0] });
ok(wait_until(5 * $SLOW, sub { requests($long) }), 'a long job runs');
$off = $t->error_log_size;
ok($t->reload, 'reloaded') or diag($t->reload_error);
ok(wait_ended(10, $long), 'it ended');
$j = job($long);
is("$j->{status} $j->{attempts} $j->{error}",
   "done 2 cut off by the worker's shutdown",
   'cut off at the shutdown timeout, retried by a new worker, done');
is_deeply([effects($long)], ['2:done:200'], 'one effect, the second run\'s');
like($t->error_log_since($off), qr/no more claims, 1 running/,
     'the old worker stopped claiming at once');


# --- PostgreSQL restart ------------------------------------------------------

$n0 = requests();
my @restart = map { enqueue({ n => $_, delay => 800 }) } 1 .. 8;
ok(wait_until(5 * $SLOW, sub { requests() >= $n0 + 8 }), '8 jobs in flight');
pg_service('stop');
sleep 0.5;
pg_service('start');
ok(wait_ended(20, @restart), 'every job ended');
$list = join ',', @restart;
is(psql("SELECT count(*) FROM jobs WHERE id IN ($list) AND status = 'done'"),
   8, 'all done');
is(psql("SELECT count(*) FROM test_job_effects WHERE job_id IN ($list)"
        . " AND outcome = 'done'"), 8, 'one effect each');
my $after = enqueue({ n => 1 });
ok(wait_ended(10, $after), 'a job enqueued after the restart runs');


# --- the kinds nobody handles ------------------------------------------------

is(psql("SELECT string_agg(status || ' ' || attempts || ' '"
        . " || coalesce(locked_by, '-') || ' ' || (updated_at = created_at),"
        . " ',') FROM jobs WHERE id IN ($unhandled)"),
   'queued 0 - true,queued 0 - true',
   'jobs of kinds without a handler wait untouched');


$t->stop;
$peer->stop;
no_bad_log($t, allow => qr/exited on signal 9/);

done_testing();
