# GET /api/v1/health and the API's error shape for bad requests.

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
    orbit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
_EOC_
    $block->set_value(config => <<'_EOC_') unless defined $block->config;
    location /api/ {
        client_max_body_size 1k;
        orbit_api;
    }
_EOC_
    $block->set_value(no_error_log => "[alert]\n[crit]\n[emerg]")
        unless defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: health answers with both parts and their latency
--- request
GET /api/v1/health
--- error_code: 200
--- response_headers
Content-Type: application/json
--- response_body_like eval
qr/^\{"status":"ok","postgres":\{"ok":true,"latencyMs":\d+\.\d{3}\},"redis":\{"ok":true,"latencyMs":\d+\.\d{3}\},"version":"\d+\.\d+\.\d+"\}$/



=== TEST 2: health with a trailing slash is the same resource
--- request
GET /api/v1/health/
--- error_code: 200
--- response_body_like: "status":"ok"



=== TEST 3: HEAD of health sends headers only
--- request
HEAD /api/v1/health
--- error_code: 200
--- response_body



=== TEST 4: unknown path under /api/v1 is a JSON 404 in the NestJS shape
--- request
GET /api/v1/nope
--- error_code: 404
--- response_headers
Content-Type: application/json
--- response_body chomp
{"statusCode":404,"message":"Cannot GET /api/v1/nope","error":"Not Found"}



=== TEST 5: a path that only shares a prefix with a route is a 404
--- request
GET /api/v1/healthz
--- error_code: 404
--- response_body chomp
{"statusCode":404,"message":"Cannot GET /api/v1/healthz","error":"Not Found"}



=== TEST 6: wrong method is a 405 naming the allowed ones
--- request
DELETE /api/v1/health
--- error_code: 405
--- response_headers
Allow: GET
Content-Type: application/json
--- response_body chomp
{"statusCode":405,"message":"Method Not Allowed","error":"Method Not Allowed"}



=== TEST 7: a body over client_max_body_size is a JSON 413, not nginx's page
--- request eval
"POST /api/v1/health\n" . ("x" x 4096)
--- error_code: 413
--- response_headers
Content-Type: application/json
--- response_body chomp
{"statusCode":413,"message":"Payload Too Large","error":"Payload Too Large"}
--- no_error_log
[alert]
[crit]



=== TEST 8: without orbit_postgres and orbit_redis health names both
--- http_config
--- request
GET /api/v1/health
--- error_code: 503
--- response_body chomp
{"status":"error","postgres":{"ok":false,"error":"not configured"},"redis":{"ok":false,"error":"not configured"},"version":"0.1.0"}



=== TEST 9: Redis unreachable: degraded but 200 (PostgreSQL is what matters)
--- http_config
    orbit_postgres "$TEST_NGINX_PG_DSN" pool=2;
    orbit_redis 127.0.0.1:1 timeout=300ms;
--- request
GET /api/v1/health
--- error_code: 200
--- response_body_like: ^\{"status":"degraded","postgres":\{"ok":true,.*"redis":\{"ok":false,"error":"[^"]+"\}



=== TEST 10: PostgreSQL refusing connections: 503 naming postgres, at once
--- http_config
    orbit_postgres "host=127.0.0.1 port=1 dbname=orbit user=orbit" pool=2;
    orbit_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- request
GET /api/v1/health
--- error_code: 503
--- response_body_like: ^\{"status":"error","postgres":\{"ok":false,"error":"postgres unavailable: .+"\},"redis":\{"ok":true
--- timeout: 2
