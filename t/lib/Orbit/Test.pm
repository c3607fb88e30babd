package Orbit::Test;

# Shared pieces of the procedural suites: an nginx with the orbit modules
# against the test run's PostgreSQL and Redis, psql for looking behind its
# back, and the error-log rule every suite follows.

use strict;
use warnings;

use Exporter qw(import);
use Test::More;
use Time::HiRes qw(sleep time);
use Orbit::Nginx;

our @EXPORT = qw(orbit_nginx psql pg_service no_bad_log wait_until);


# An Orbit::Nginx serving `location /api/ { orbit_api; }` plus $opts{config}.
sub orbit_nginx {
    my (%opts) = @_;

    my $pool = delete $opts{pool} // 4;
    my $http = delete $opts{http_config}
        // "orbit_postgres \"$ENV{TEST_NGINX_PG_DSN}\" pool=$pool;\n"
         . "orbit_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};\n";
    my $config = "location /api/ { orbit_api; }\n" . (delete $opts{config} // '');

    return Orbit::Nginx->new(http_config => $http, config => $config, %opts);
}


# psql as the superuser of the test cluster; returns trimmed output.
sub psql {
    my ($sql, %opts) = @_;
    my $db = $opts{db} // 'orbit';
    my $out = `psql -X -q -tA -h 127.0.0.1 -p $ENV{TEST_NGINX_PG_PORT} -U postgres -d $db -c "$sql" 2>&1`;
    chomp $out;
    return $out;
}


# Stop or start the test run's PostgreSQL (tools/orbit service pg ...).
sub pg_service {
    my ($action) = @_;
    system("$ENV{ORBIT_ROOT}/tools/orbit", 'service', 'pg', $action) == 0
        or die "pg $action failed";
}


# Poll $cond every 50 ms for up to $secs; returns the elapsed time or undef.
sub wait_until {
    my ($secs, $cond) = @_;
    my $start = time;
    while (time - $start < $secs) {
        return time - $start if $cond->();
        sleep 0.05;
    }
    return undef;
}


# One assertion: no [alert], [crit] or [emerg] in the whole error log, but
# for lines matching $opts{allow} (an error the test itself provoked).
# Under ORBIT_VALGRIND also no memory error (nor orbit_ leak) in valgrind's
# logs of every nginx $t ran (call it after $t->stop); other leaks: diag.
sub no_bad_log {
    my ($t, %opts) = @_;
    my $allow = $opts{allow} // qr/(?!)/;
    my $name = $opts{name};
    my @bad = grep { /\[(alert|crit|emerg)\]/ && !/$allow/ }
              split /\n/, $t->error_log;
    my @vg = $t->valgrind_errors;
    my $default = 'no [alert], [crit] or [emerg] in error.log';
    $default .= ' and no valgrind memory errors' if Orbit::Nginx::valgrind_enabled();
    ok(!@bad && !@vg, $name // $default) or do {
        diag(join "\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)]) if @bad;
        diag(Orbit::Nginx::valgrind_summary(@vg)) if @vg;
    };
    my @leaks = grep { !Orbit::Nginx::has_orbit_frame($_) } $t->valgrind_leaks;
    diag(scalar(@leaks) . ' "definitely lost" leak report(s) outside orbit code'
         . " (not a failure); first:\n$leaks[0]") if @leaks;
}

1;
