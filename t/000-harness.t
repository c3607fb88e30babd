# Self test of the test harness (t/lib/Test/Nginx/Socket.pm on Orbit::Nginx).
# Uses stock nginx directives only, so it needs no OrbitDesk module.

use strict;
use warnings;

BEGIN { $ENV{TEST_NGINX_LOAD_MODULES} = '' }

use Test::Nginx::Socket;

our $FirstPid;

my $shared_config = <<'_EOC_';
    location = /t {
        return 200 "hello\n";
    }

    location = /hdr {
        add_header X-Orbit-Test "yes";
        return 200 "with header\n";
    }

    location = /foo {
        return 200 "foo=$http_x_foo\n";
    }

    location = /len {
        return 200 "len=$content_length method=$request_method\n";
    }

    location = /nonl {
        return 200 "no newline";
    }

    location = /small {
        client_max_body_size 10;
        return 200 "body accepted\n";
    }

    location = /port {
        return 200 "port=$TEST_NGINX_SERVER_PORT\n";
    }

    location = /pid {
        return 200 "$pid";
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(config => $shared_config) unless defined $block->config;
    $block->set_value(no_error_log => "[alert]") unless defined $block->no_error_log;
});

repeat_each(2);
no_shuffle();

plan tests => repeat_each() * (3 * blocks() + 11);

run_tests();

__DATA__

=== TEST 1: response_body, no_error_log with two patterns
--- request
GET /t
--- response_body
hello
--- no_error_log
[error]
[warn]



=== TEST 2: response_headers present and absent, response_body_like
--- request
GET /hdr
--- error_code: 200
--- response_headers
X-Orbit-Test: yes
Content-Type: text/plain
!X-Not-There
--- response_body_like: ^with header$



=== TEST 3: response_headers_like
--- request
GET /hdr
--- response_headers_like
Server: nginx(/[\d.]+)?
X-Orbit-Test: y.s
--- response_body
with header



=== TEST 4: more_headers, timeout and wait sections
--- request
GET /foo
--- more_headers
X-Foo: bar baz
--- timeout: 5
--- wait: 0.1
--- response_body
foo=bar baz



=== TEST 5: POST body gets a Content-Length
--- request
POST /len
hello world
--- response_body
len=11 method=POST



=== TEST 6: request eval and response_body eval
--- request eval
"POST /len\n" . ("x" x 100)
--- response_body eval
"len=100 method=POST\n"



=== TEST 7: chomp filter on the expected body
--- request
GET /nonl
--- response_body chomp
no newline



=== TEST 8: client_max_body_size gives 413 and an [error] line
--- request eval
"POST /small\n" . ("y" x 20)
--- error_code: 413
--- response_body_like: 413 Request Entity Too Large
--- error_log
client intended to send too large body: 20 bytes



=== TEST 9: missing file gives 404 and open() failed
--- request
GET /no-such-file.html
--- error_code: 404
--- error_log
open()
failed (2: No such file or directory)
--- no_error_log
[crit]



=== TEST 10: error_log eval into a regex
--- request
GET /no-such-file.html
--- error_code: 404
--- error_log eval
qr/\[error\] \d+#\d+: \*\d+ open\(\) ".*no-such-file\.html" failed/



=== TEST 11: raw_request, HTTP/1.0
--- raw_request eval
"GET /t HTTP/1.0\r\n\r\n"
--- response_body
hello



=== TEST 12: HEAD gets headers only
--- request
HEAD /t
--- response_body:



=== TEST 13: two requests in one block
--- request eval
["GET /t", "GET /foo"]
--- more_headers eval
["", "X-Foo: two"]
--- error_code eval
[200, 200]
--- response_body eval
["hello\n", "foo=two\n"]



=== TEST 14: user_files are served from html_dir
--- user_files
>>> static/a.txt
static file
--- request
GET /static/a.txt
--- response_body
static file



=== TEST 15: $TEST_NGINX_SERVER_PORT in config, $ServerPort in expected body
--- request
GET /port
--- response_body
port=$ServerPort



=== TEST 16: remember the nginx pid
--- request
GET /pid
--- response_body_filters eval
sub { $main::FirstPid = $_[0]; "captured\n" }
--- response_body
captured



=== TEST 17: same config, so the same nginx keeps serving
--- skip_eval
3: $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} || $Test::Nginx::Util::ForceRestartOnTest
--- request
GET /pid
--- response_body_filters eval
sub { $_[0] eq $main::FirstPid ? "same nginx\n" : "restarted: $_[0]\n" }
--- response_body
same nginx



=== TEST 18: a config change restarts nginx
--- config
    location = /pid {
        return 200 "$pid";
    }
--- request
GET /pid
--- response_body_filters eval
sub { $_[0] ne $main::FirstPid ? "restarted\n" : "same nginx: $_[0]\n" }
--- response_body
restarted



=== TEST 19: skip_nginx skips its assertions
--- skip_nginx: 3: < 999.0.0
--- request
GET /t
--- response_body
never checked
