# src/store migrations: applied once each, in order, in a transaction, by
# the nginx master (orbit_migrate on) and by orbit-admin alike.

use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use Orbit::Test;

my $ADMIN = "$ENV{ORBIT_BUILD_DIR}/orbit-admin";
my $DIR = $ENV{TEST_NGINX_MIGRATIONS};

sub fresh_db {
    my $db = shift;
    psql("DROP DATABASE IF EXISTS $db WITH (FORCE)", db => 'postgres');
    psql("CREATE DATABASE $db OWNER orbit", db => 'postgres');
    return "host=127.0.0.1 port=$ENV{TEST_NGINX_PG_PORT} dbname=$db user=orbit";
}

my @files = sort grep { /^\d{3}_.*\.sql$/ } map { s{.*/}{}r } glob "$DIR/*.sql";
my $latest = $files[-1] =~ s/\.sql$//r;

# --- the master applies them at start (from a copy we can add to)
my $dsn = fresh_db('orbit_mig');
my $copy = tempdir(CLEANUP => 1);
system("cp $DIR/*.sql $copy/") == 0 or die;

my $t = orbit_nginx(http_config => <<"_EOC_");
    orbit_postgres "$dsn" pool=1;
    orbit_migrations $copy;
    orbit_migrate on;
_EOC_
$t->start;

is(psql('SELECT count(*) FROM schema_migrations', db => 'orbit_mig'),
   scalar @files, 'every migration recorded once');
is(psql("SELECT max(version) FROM schema_migrations", db => 'orbit_mig'),
   $latest, 'up to the latest');
is(psql("SELECT to_regclass('public.tenants') IS NOT NULL", db => 'orbit_mig'),
   't', 'their tables exist');

# --- a reload applies what is new, and only that
open my $nf, '>', "$copy/998_extra.sql" or die;
print $nf "CREATE TABLE extra (id int);\n";
close $nf;

my $offset = $t->error_log_size;
ok($t->reload, 'reload with one new migration');
my $log = $t->error_log_since($offset);
like($log, qr/\[notice\].*orbit: migration 998_extra applied/,
     'the master applied and logged the new one');
is(() = $log =~ /migration \S+ applied/g, 1, 'and nothing else again');
is(psql("SELECT max(version) FROM schema_migrations", db => 'orbit_mig'),
   '998_extra', 'recorded');

# --- a broken migration rejects the configuration; the old one serves on
my $bad = tempdir(CLEANUP => 1);
system("cp $copy/*.sql $bad/") == 0 or die;
open my $fh, '>', "$bad/999_broken.sql" or die;
print $fh "CREATE TABLE half_done (id int);\nSELECT no_such_function();\n";
close $fh;

$t->http_config(<<"_EOC_");
    orbit_postgres "$dsn" pool=1;
    orbit_migrations $bad;
    orbit_migrate on;
_EOC_
ok(!$t->reload, 'reload with a broken migration is refused');
like($t->reload_error // '', qr/migrations failed: 999_broken\.sql: .*no_such_function/,
     'the error names the file and the cause');
is(psql("SELECT to_regclass('public.half_done') IS NULL", db => 'orbit_mig'),
   't', 'nothing of the broken migration was kept (one transaction)');
is($t->http_get('/api/v1/health')->{status}, 200,
   'the running configuration still serves');
$t->stop;

# --- orbit-admin: the same runner from the command line, idempotent
$dsn = fresh_db('orbit_mig2');
is(system("$ADMIN migrate '$dsn' $DIR 2>/dev/null"), 0, 'orbit-admin migrate');
is(system("$ADMIN migrate '$dsn' $DIR 2>/dev/null"), 0, 'and again');
is(psql('SELECT count(*) FROM schema_migrations', db => 'orbit_mig2'),
   scalar @files, 'still each migration once');

# --- two nodes starting together serialise on the advisory lock
$dsn = fresh_db('orbit_mig3');
my @pids = map {
    my $pid = fork // die;
    if (!$pid) { exec("$ADMIN migrate '$dsn' $DIR 2>/dev/null") or exit 9 }
    $pid;
} 1 .. 3;
my @rc = map { waitpid($_, 0); $? } @pids;
is_deeply(\@rc, [0, 0, 0], 'three concurrent runners all succeed');
is(psql('SELECT count(*) FROM schema_migrations', db => 'orbit_mig3'),
   scalar @files, 'each migration applied exactly once');

# --- a directory that does not exist is a clear error
isnt(system("$ADMIN migrate '$dsn' /nonexistent 2>/dev/null"), 0,
     'a missing directory fails');

no_bad_log($t, allow => qr/migrations failed: 999_broken/);

psql("DROP DATABASE IF EXISTS $_ WITH (FORCE)", db => 'postgres')
    for qw(orbit_mig orbit_mig2 orbit_mig3);

done_testing();
