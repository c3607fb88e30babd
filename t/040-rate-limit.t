# The API's rate limiter (src/api/orbit_limit.c) through the test module's
# orbit_test_limit_zone / orbit_test_limit / orbit_test_limit_check: the
# spec's 100 requests a minute and its headers, per-key counts, per-server
# and per-location rates, one count across workers, counts kept across a
# reload, a full zone, and configuration errors.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time);
use Orbit::Nginx;
use Orbit::Test;

my $PORT = $ENV{TEST_NGINX_SERVER_PORT} || 1984;

# Sequential GETs of $path?k=$key (each on its own connection).
sub hits {
    my ($t, $n, $path, %headers) = @_;
    return map { $t->http_get($path, headers => {%headers}) } 1 .. $n;
}

sub h { my ($r, $name) = @_; return $r->{headers}{ lc $name } }

# One assertion: every response admitted, X-RateLimit-Limit $limit, and
# X-RateLimit-Remaining counting down from $first by one, no Retry-After.
sub admitted_ok {
    my ($name, $limit, $first, @res) = @_;
    my $want = $first;
    for my $i (0 .. $#res) {
        my $r = $res[$i];
        my $got = sprintf '%s %s limit=%s remaining=%s retry=%s',
            $r->{status} // 'none', ($r->{body} // '') =~ s/\n/\\n/r,
            h($r, 'X-RateLimit-Limit') // '-',
            h($r, 'X-RateLimit-Remaining') // '-',
            h($r, 'Retry-After') // '-';
        my $exp = "200 ok\\n limit=$limit remaining=$want retry=-";
        if ($got ne $exp) {
            fail($name);
            diag("response $i: got '$got', expected '$exp'");
            return 0;
        }
        $want--;
    }
    pass($name);
    return 1;
}

# One assertion: refused with 429, X-RateLimit-Remaining 0, Retry-After
# within the window.
sub refused {
    my ($limit, $r) = @_;
    my $retry = h($r, 'Retry-After') // '';
    return ($r->{status} // 0) == 429
        && $r->{body} eq "too many requests\n"
        && (h($r, 'X-RateLimit-Limit') // '') eq $limit
        && (h($r, 'X-RateLimit-Remaining') // '') eq '0'
        && $retry =~ /^\d+$/ && $retry >= 1 && $retry <= 60;
}

sub refused_ok {
    my ($name, $limit, $r) = @_;
    ok(refused($limit, $r), $name)
        or diag("got: " . ($r->{raw_head} // $r->{error} // ''));
}

my $t = Orbit::Nginx->new(
    workers     => 1,
    http_config => <<"_EOC_",
    orbit_test_limit_zone  api 1m rate=100r/m;
    orbit_test_limit_zone  fast 1m rate=2r/s;
    orbit_test_limit       api;

    server {
        listen       127.0.0.1:$PORT;
        server_name  tenant.example;
        orbit_test_limit  api rate=300r/m;

        location /limit { orbit_test_limit_check \$arg_k; }
    }
_EOC_
    config => <<'_EOC_',
        location /limit {
            orbit_test_limit_check $arg_k;
        }

        location /limit300 {
            orbit_test_limit api rate=300r/m;
            orbit_test_limit_check $arg_k;
        }

        location /fast {
            orbit_test_limit fast;
            orbit_test_limit_check $arg_k;
        }

        location /off {
            orbit_test_limit off;
            orbit_test_limit_check $arg_k;
        }

        location /nested {
            orbit_test_limit api rate=300r/m;

            location /nested/inner {
                orbit_test_limit_check $arg_k;
            }

            location /nested/zone {
                orbit_test_limit api;
                orbit_test_limit_check $arg_k;
            }
        }
_EOC_
);
$t->start;

# --- the spec's numbers: 100 a minute, the 101st is refused

my $t0 = time;
admitted_ok('100 requests of a key pass, Remaining 99..0, Limit 100',
            100, 99, hits($t, 100, '/limit?k=a'));
my $r = $t->http_get('/limit?k=a');
my $spent = time - $t0;
refused_ok('the 101st gets 429, Remaining 0, Retry-After 1..60', 100, $r);
my $retry = h($r, 'Retry-After') // 0;
cmp_ok($retry, '>=', 60 - int($spent) - 1,
       sprintf("Retry-After (%d s) is the window's rest (%.1f s spent)",
               $retry, $spent));
refused_ok('refused again: refusals are not counted but do not help', 100,
           $t->http_get('/limit?k=a'));

admitted_ok('another key has its own count', 100, 99,
            hits($t, 1, '/limit?k=b'));
refused_ok('while the first stays refused', 100, $t->http_get('/limit?k=a'));
admitted_ok('keys are bytes: a key that only shares a prefix is another',
            100, 99, hits($t, 1, '/limit?k=aa'));

# --- rates of a location, a server, r/s, off, inheritance

admitted_ok('a location with rate=300r/m admits 300', 300, 299,
            hits($t, 300, '/limit300?k=c'));
refused_ok('and refuses the 301st', 300, $t->http_get('/limit300?k=c'));

admitted_ok('a tenant server with rate=300r/m admits 300', 300, 299,
            hits($t, 300, '/limit?k=d', Host => 'tenant.example'));
refused_ok('and refuses the 301st', 300,
           $t->http_get('/limit?k=d', headers => { Host => 'tenant.example' }));
admitted_ok('the same key on the default server has the default rate',
            100, 99, hits($t, 1, '/limit?k=e'));

admitted_ok('a location inherits its parent\'s rate', 300, 299,
            hits($t, 1, '/nested/inner?k=f'));
admitted_ok('a location that names the zone alone gets the zone\'s rate',
            100, 99, hits($t, 1, '/nested/zone?k=g'));

admitted_ok('one count per key and zone: a key refused at 100 has 199 of '
            . '300 left where the limit is 300',
            300, 199, hits($t, 1, '/limit300?k=a'));

admitted_ok('rate=2r/s is a budget of 120 a minute', 120, 119,
            hits($t, 120, '/fast?k=h'));
refused_ok('and refuses the 121st', 120, $t->http_get('/fast?k=h'));
admitted_ok('zones are separate: the key is fresh in the other zone', 100,
            99, hits($t, 1, '/limit?k=h'));

$r = $t->http_get('/off?k=a');
ok($r->{status} == 200 && $r->{body} eq "no limit\n"
   && !defined h($r, 'X-RateLimit-Limit'),
   'orbit_limit off: no limit, no headers') or diag($r->{raw_head});

$r = $t->http_get('/limit');
ok($r->{status} == 200 && $r->{body} eq "no limit\n"
   && !defined h($r, 'X-RateLimit-Remaining'),
   'an empty key is not limited') or diag($r->{raw_head});

$t->stop;
no_bad_log($t);

# --- two workers count one zone

$t = Orbit::Nginx->new(
    workers     => 2,
    # reuseport: each worker its own listening socket, and the kernel
    # spreads the connections over them
    http_config => <<"_EOC_",
    orbit_test_limit_zone  api 1m rate=300r/m;

    server {
        listen       127.0.0.1:$PORT reuseport;
        server_name  spread.example;
    }
_EOC_
    config => <<'_EOC_',
        location /limit {
            orbit_test_limit api;
            orbit_test_limit_check $arg_k;
            add_header X-Pid $pid always;
        }
_EOC_
);
$t->start;

my @all;
for (1 .. 10) {
    push @all, $t->parallel_requests(
        [ map { Orbit::Nginx::build_request('GET', '/limit?k=w') } 1 .. 40 ],
        timeout => 10);
}
my %status;
$status{ $_->{status} // 'none' }++ for @all;
is(join(' ', map { "$_=$status{$_}" } sort keys %status), '200=300 429=100',
   '400 requests on 40 connections at a time: exactly 300 admitted');
my %left;
$left{ h($_, 'X-RateLimit-Remaining') // '-' }++
    for grep { ($_->{status} // 0) == 200 } @all;
is(scalar(grep { ($left{$_} // 0) == 1 } 0 .. 299), 300,
   'each Remaining 0..299 was answered exactly once');
my %pids = map { (h($_, 'X-Pid') // '-') => 1 } @all;
is(scalar(keys %pids), 2, 'both workers answered')
    or diag('pids: ' . join(' ', keys %pids));
ok(!grep({ ($_->{status} // 0) == 429 && !refused(300, $_) } @all),
   'every refusal has its headers');

$t->stop;
no_bad_log($t);

# --- a reload keeps the counts: the zone is adopted

my $http = sub {
    my ($size, $rate) = @_;
    return "    orbit_test_limit_zone api $size rate=$rate;\n";
};
my $config = <<'_EOC_';
        location /limit {
            orbit_test_limit api;
            orbit_test_limit_check $arg_k;
            add_header X-Pid $pid always;
        }
_EOC_

$t = Orbit::Nginx->new(workers => 2, http_config => $http->('1m', '100r/m'),
                       config => $config);
$t->start;

admitted_ok('60 requests before the reload', 100, 99,
            hits($t, 60, '/limit?k=r'));
my @old = $t->worker_pids;
ok($t->reload, 'reload') or diag($t->reload_error);
my %old = map { $_ => 1 } @old;
ok(!grep({ $old{$_} } $t->worker_pids), 'a new generation of workers');
admitted_ok('after it the count goes on: 40 left', 100, 39,
            hits($t, 40, '/limit?k=r'));
refused_ok('and the 101st is refused', 100, $t->http_get('/limit?k=r'));

$t->http_config($http->('1m', '200r/m'));
ok($t->reload, 'reload with another rate, same size') or diag($t->reload_error);
admitted_ok('the count is kept and the new rate applies', 200, 99,
            hits($t, 1, '/limit?k=r'));

$t->http_config($http->('2m', '200r/m'));
ok($t->reload, 'reload with another size') or diag($t->reload_error);
admitted_ok('another size is a new zone: counts start over', 200, 199,
            hits($t, 1, '/limit?k=r'));

$t->stop;
no_bad_log($t);

# --- a tiny zone flooded with keys keeps answering

$t = Orbit::Nginx->new(
    workers     => 2,
    http_config => "    orbit_test_limit_zone tiny 32k rate=100r/m;\n",
    config      => <<'_EOC_',
        location /tiny {
            orbit_test_limit tiny;
            orbit_test_limit_check $arg_k;
        }
_EOC_
);
$t->start;

admitted_ok('a key before the flood', 100, 99,
            hits($t, 1, '/tiny?k=first'));
@all = ();
for my $batch (0 .. 19) {
    push @all, $t->parallel_requests(
        [ map { Orbit::Nginx::build_request('GET', "/tiny?k=key$batch-$_") }
              1 .. 100 ],
        timeout => 10);
}
my @bad = grep {
    ($_->{status} // 0) != 200
        || (h($_, 'X-RateLimit-Remaining') // '') ne '99'
} @all;
is(scalar(@all) . ' ' . scalar(@bad), '2000 0',
   '2000 distinct keys in a 32k zone: each admitted, Remaining 99')
    or diag($bad[0]{raw_head} // $bad[0]{error});
admitted_ok('the least recently used keys made room: the first starts over',
            100, 99, hits($t, 1, '/tiny?k=first'));

my $size = $t->error_log_size;
my $long = 'x' x 3000;
admitted_ok('a key too large for what eviction frees goes through', 100, 99,
            hits($t, 1, "/tiny?k=$long"));
like($t->error_log_since($size), qr/\[warn\].*zone "tiny" is full/,
     'with a [warn]');
admitted_ok('the zone still counts', 100, 99,
            hits($t, 4, '/tiny?k=hot'));

$t->stop;
unlike($t->error_log, qr/ngx_slab_alloc\(\) failed/,
       'no slab allocation failure logged');
no_bad_log($t);

# --- configuration errors

sub conf_error {
    my ($http, $config) = @_;
    my $c = Orbit::Nginx->new(http_config => $http, config => $config // '');
    $c->write_conf;
    my $root = $c->servroot;
    return scalar `$c->{binary} -p $root/ -c conf/nginx.conf -t 2>&1`;
}

my %cases = (
    'orbit_test_limit_zone api 16k;'
        => qr/zone "api" is too small/,
    'orbit_test_limit_zone api 1m rate=100;'
        => qr/invalid parameter "rate=100"/,
    'orbit_test_limit_zone api 1m rate=0r/m;'
        => qr/invalid parameter "rate=0r\/m"/,
    'orbit_test_limit_zone api 1m burst=5;'
        => qr/invalid parameter "burst=5"/,
    'orbit_test_limit_zone api 1m; orbit_test_limit_zone api 1m;'
        => qr/orbit_test_limit_zone "api" is already declared/,
    'orbit_test_limit nope;'
        => qr/unknown rate limit zone "nope"/,
    'orbit_test_limit api; orbit_test_limit_zone api 1m;'
        => qr/unknown rate limit zone "api"/,
    'orbit_test_limit_zone api 1m; orbit_test_limit off rate=1r/m;'
        => qr/invalid parameter "rate=1r\/m" after "off"/,
    'orbit_test_limit_zone api 1m; orbit_test_limit api rate=fast;'
        => qr/invalid parameter "rate=fast"/,
    'orbit_test_limit_zone api 1m; orbit_test_limit api; orbit_test_limit off;'
        => qr/"orbit_test_limit" directive is duplicate/,
);
for my $http (sort keys %cases) {
    like(conf_error($http), $cases{$http}, "nginx -t refuses: $http");
}
like(conf_error('orbit_test_limit_zone api 1m rate=10r/s;',
                'location / { orbit_test_limit api rate=1r/m;'
                . ' orbit_test_limit_check $remote_addr; }'),
     qr/test is successful/, 'nginx -t accepts a good configuration');

done_testing();
