# The worker's outbound HTTP client (src/io/orbit_http_client.c: libcurl
# multi-socket driven by nginx events), seen through orbit_test_fetch.
#
# Targets are other locations of the same nginx, plus two sockets this
# script holds: one bound but not listening (connections are refused) and
# one listening that never accepts (requests are never answered).

use strict;
use warnings;

use File::Temp ();
use IO::Socket::INET ();
use List::Util ();

my ($Refuse, $Hang, $Big);

BEGIN {
    my $build = $ENV{ORBIT_BUILD_DIR} || 'build';
    $ENV{TEST_NGINX_LOAD_MODULES} //=
        "$build/modules/ngx_http_orbit_module.so "
        . "$build/modules/ngx_http_orbit_test_module.so";

    # bound, not listening: a connect gets RST at once
    $Refuse = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                    Proto => 'tcp', ReuseAddr => 1)
        or die "cannot bind: $!";

    # listening, never accepting: the kernel completes the handshake and
    # the request sits in the backlog unanswered
    $Hang = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Proto => 'tcp', Listen => 256,
                                  ReuseAddr => 1)
        or die "cannot listen: $!";

    $Big = File::Temp->new(SUFFIX => '.txt');
    print {$Big} join('', map { sprintf "%07d\n", $_ } 1 .. 375);  # 3000 B
    close $Big;

    $ENV{TEST_NGINX_REFUSED_PORT} = $Refuse->sockport;
    $ENV{TEST_NGINX_HANG_PORT} = $Hang->sockport;
    $ENV{TEST_NGINX_BIG_FILE} = $Big->filename;
}

use Test::Nginx::Socket 'no_plan';
use Orbit::Nginx ();    # parallel_requests, for TEST 10

my $config = <<'_EOC_';
    set $target http://127.0.0.1:$TEST_NGINX_SERVER_PORT;

    location = /get {
        orbit_test_fetch $target/hello;
    }

    location = /hello {
        default_type application/json;
        return 200 '{"hello":"world"}';
    }

    location = /post {
        orbit_test_fetch $target/echo;
    }

    location = /put {
        orbit_test_fetch $target/echo method=PUT;
    }

    # proxy_pass reads the body, so $request_body is set when the proxied
    # request is built; /reflect answers with what it was given
    location = /echo {
        client_body_in_single_buffer on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/reflect;
        proxy_set_header X-Method $request_method;
        proxy_set_header X-Type $content_type;
        proxy_set_header X-Length $content_length;
        proxy_set_header X-Body $request_body;
    }

    location = /reflect {
        return 200 "$http_x_method $http_x_type $http_x_length $http_x_body";
    }

    location = /missing {
        orbit_test_fetch $target/nope;
    }

    location = /nope {
        return 404 "no such thing\n";
    }

    location = /refused {
        orbit_test_fetch http://127.0.0.1:$TEST_NGINX_REFUSED_PORT/;
    }

    location = /hang {
        orbit_test_fetch http://127.0.0.1:$TEST_NGINX_HANG_PORT/ timeout=500ms;
    }

    location = /slow {
        orbit_test_fetch $target/slow-body;
    }

    location = /slow-body {
        limit_rate 1k;
        default_type text/plain;
        alias $TEST_NGINX_BIG_FILE;
    }

    location = /small-max {
        orbit_test_fetch $target/big-body max=1k;
    }

    location = /small-max-chunked {
        orbit_test_fetch $target/big-chunked max=1k;
    }

    location = /big-body {
        default_type text/plain;
        alias $TEST_NGINX_BIG_FILE;
    }

    # sub_filter drops Content-Length: the body comes chunked
    location = /big-chunked {
        default_type text/plain;
        sub_filter_types *;
        sub_filter 0000001 one;
        alias $TEST_NGINX_BIG_FILE;
    }

    location = /name {
        orbit_test_fetch http://localhost:$TEST_NGINX_SERVER_PORT/hello;
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(config => $config) unless defined $block->config;
    $block->set_value(no_error_log => "[alert]\n[crit]\n")
        unless defined $block->no_error_log;
});

master_on();
workers(1);
repeat_each(2);
no_shuffle();

run_tests();

__DATA__

=== TEST 1: GET 200 with body and Content-Type passed through
--- request
GET /get
--- response_headers
Content-Type: application/json
--- response_body chomp
{"hello":"world"}



=== TEST 2: POST body forwarded with its Content-Type
--- request
POST /post
{"a":[1,2,3]}
--- more_headers
Content-Type: application/json
--- response_body chomp
POST application/json 13 {"a":[1,2,3]}



=== TEST 3: method= overrides the client's method, body still forwarded
--- request
POST /put
x=1&y=2
--- response_body chomp
PUT application/x-www-form-urlencoded 7 x=1&y=2



=== TEST 4: upstream 404 passed through with its body
--- request
GET /missing
--- error_code: 404
--- response_body
no such thing



=== TEST 5: connection refused is a prompt 502 with curl's error
--- request
GET /refused
--- error_code: 502
--- response_headers_like
X-Orbit-Fetch-Ms: \d{1,3}
--- response_body_like chomp
^Couldn't connect to server



=== TEST 6: a server that never answers is a 504 at the timeout, not before
--- request
GET /hang
--- error_code: 504
--- response_headers_like
X-Orbit-Fetch-Ms: (4[89]\d|[5-9]\d\d|1\d\d\d)
--- response_body chomp
timeout



=== TEST 7: a host name goes through curl's threaded resolver
--- request
GET /name
--- response_body chomp
{"hello":"world"}



=== TEST 8: Content-Length above max_response fails the fetch
--- request
GET /small-max
--- error_code: 502
--- response_body chomp
response too large



=== TEST 9: a chunked body growing above max_response fails the fetch
--- request
GET /small-max-chunked
--- error_code: 502
--- response_body chomp
response too large



=== TEST 10: 50 concurrent slow fetches on one worker all succeed
--- init
my @reqs = map { Orbit::Nginx::build_request('GET', "/slow?i=$_") } 1 .. 50;
my $res = Orbit::Nginx::parallel_requests(\@reqs,
    port => $ENV{TEST_NGINX_SERVER_PORT}, timeout => 30);
my $good = grep { ($_->{status} // 0) == 200 && length $_->{body} == 3000 }
           @$res;
Test::More::is($good, 50, 'TEST 10: all 50 fetches answered 200, 3000 bytes');
# one fetch takes ~2-3 s at 1k/s; one after the other would take minutes
my $slowest = List::Util::max(map { $_->{elapsed} } @$res);
Test::More::cmp_ok($slowest, '<', 10, 'TEST 10: the fetches ran at once');
--- request
GET /get
--- response_body chomp
{"hello":"world"}



=== TEST 11: client aborting mid-fetch cancels the transfer
--- request
GET /slow
--- timeout: 0.3
--- abort
--- ignore_response
--- wait: 0.3
--- error_log
canceled
--- no_error_log
[alert]
[crit]
[error]
