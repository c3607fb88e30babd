# The API's rate limit: X-RateLimit-* on every answer, 429 with
# Retry-After in the API's error shape, a tenant's server with its own
# rate (orbit_limit in a server block bound to its domain).

use strict;
use warnings;
use Test::Nginx::Socket 'no_plan';

master_on();
workers(1);
no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(http_config => <<'_EOC_') unless defined $block->http_config;
    orbit_postgres "$TEST_NGINX_PG_DSN" pool=2;
    orbit_secrets $TEST_NGINX_SECRETS;
    orbit_limit_zone api 1m rate=5r/m;
    orbit_limit api;
_EOC_
    $block->set_value(config => <<'_EOC_') unless defined $block->config;
    location /api/ {
        orbit_api;
    }
_EOC_
    $block->set_value(no_error_log => "[alert]\n[crit]\n[emerg]")
        unless defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: five requests a minute pass, counting down; the sixth is 429
--- request eval
[map { "GET /api/v1/health" } 1 .. 6]
--- error_code eval
[200, 200, 200, 200, 200, 429]
--- response_headers_like eval
[(map { "X-RateLimit-Limit: 5\nX-RateLimit-Remaining: " . (5 - $_) } 1 .. 5),
 "X-RateLimit-Remaining: 0\nRetry-After: [1-6]?[0-9]\nContent-Type: application/json"]
--- response_body_like eval
[(map { '"postgres":\{"ok":true' } 1 .. 5),
 '^\{"statusCode":429,"message":"ThrottlerException: Too Many Requests","error":"Too Many Requests"\}$']



=== TEST 2: every route counts, refused ones (401, 404) included
--- http_config
    orbit_postgres "$TEST_NGINX_PG_DSN" pool=2;
    orbit_secrets $TEST_NGINX_SECRETS;
    orbit_limit_zone api2 1m rate=5r/m;
    orbit_limit api2;
--- request eval
["GET /api/v1/auth/me", "GET /api/v1/nope", "GET /api/v1/health",
 "GET /api/v1/health", "GET /api/v1/health", "GET /api/v1/auth/me"]
--- error_code eval
[401, 404, 200, 200, 200, 429]



=== TEST 3: a tenant's own domain with a higher rate
--- config
    location /api/ {
        orbit_api;
    }
--- http_config
    orbit_postgres "$TEST_NGINX_PG_DSN" pool=2;
    orbit_secrets $TEST_NGINX_SECRETS;
    orbit_limit_zone api3 1m rate=5r/m;
    orbit_limit api3;
    server {
        listen 127.0.0.1:$TEST_NGINX_SERVER_PORT;
        server_name support.acme.test;
        orbit_limit api3 rate=300r/m;
        location /api/ {
            orbit_api;
        }
    }
--- more_headers
Host: support.acme.test
--- request
GET /api/v1/health
--- error_code: 200
--- response_headers
X-RateLimit-Limit: 300
X-RateLimit-Remaining: 299



=== TEST 4: "orbit_limit off" turns it off for a location
--- http_config
    orbit_postgres "$TEST_NGINX_PG_DSN" pool=2;
    orbit_limit_zone api4 1m rate=1r/m;
    orbit_limit api4;
--- config
    location /api/ {
        orbit_limit off;
        orbit_api;
    }
--- request eval
["GET /api/v1/health", "GET /api/v1/health", "GET /api/v1/health"]
--- error_code eval
[200, 200, 200]
--- response_headers eval
["!X-RateLimit-Limit", "!X-RateLimit-Limit", "!X-RateLimit-Limit"]
