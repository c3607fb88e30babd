# src/io/orbit_pg through the test module: bound parameters, errors,
# timeouts, the queue, LISTEN/NOTIFY.

use strict;
use warnings;
use Test::Nginx::Socket 'no_plan';

master_on();
workers(1);
no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(http_config => <<'_EOC_') unless defined $block->http_config;
    orbit_postgres "$TEST_NGINX_PG_DSN" pool=2 timeout=3s;
_EOC_
    $block->set_value(no_error_log => "[alert]\n[crit]\n[emerg]")
        unless defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: a bound parameter is data, never SQL
--- config
    location = /t {
        orbit_test_sql "SELECT $1::text || '!'" $arg_v;
    }
--- request
GET /t?v=x');DROP/**/TABLE/**/tenants;--
--- error_code: 200
--- response_body chomp
x');DROP/**/TABLE/**/tenants;--!



=== TEST 2: several parameters, NULL-free text values
--- config
    location = /t {
        orbit_test_sql "SELECT $1::int + $2::int" $arg_a $arg_b;
    }
--- request
GET /t?a=40&b=2
--- error_code: 200
--- response_body chomp
42



=== TEST 3: an SQL error comes back as the server's message
--- config
    location = /t {
        orbit_test_sql "SELECT $1::int" $arg_v;
    }
--- request
GET /t?v=abc
--- error_code: 502
--- response_body_like: invalid input syntax for type integer



=== TEST 4: a query over its timeout gives up at the timeout
--- http_config
    orbit_postgres "$TEST_NGINX_PG_DSN" pool=2 timeout=500ms;
--- config
    location = /t {
        orbit_test_sql "SELECT pg_sleep(3)";
    }
--- request
GET /t
--- error_code: 504
--- response_body: postgres query timed out



=== TEST 5: ...and the server ended it too: the connection is reused
--- http_config
    orbit_postgres "$TEST_NGINX_PG_DSN" pool=1 timeout=500ms;
--- config
    location = /sleep {
        orbit_test_sql "SELECT pg_sleep(3)";
    }
    location = /t {
        orbit_test_sql "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'orbitdesk' AND query LIKE 'SELECT pg_sleep%' AND state = 'active'";
    }
--- request eval
["GET /sleep", "GET /t"]
--- error_code eval
[504, 200]
--- response_body eval
["postgres query timed out", "0"]



=== TEST 6: the queue holds queries while the pool is busy
--- http_config
    orbit_postgres "$TEST_NGINX_PG_DSN" pool=1 queue=0;
--- config
    location = /t {
        orbit_test_sql "SELECT 1";
    }
--- request
GET /t
--- error_code: 503
--- response_body: postgres queue is full



=== TEST 7: LISTEN/NOTIFY reaches a waiting request
--- config
    location = /wait {
        orbit_test_listen orbit_test_chan 3s;
    }
    location = /notify {
        orbit_test_sql "SELECT pg_notify('orbit_test_chan', $1)" $arg_p;
    }
--- request eval
["GET /wait", "GET /notify?p=warmup"]
--- error_code eval
[504, 200]
--- timeout: 5



=== TEST 8: a notification after LISTEN is delivered with its payload
--- config
    location = /wait {
        orbit_test_listen orbit_test_chan 3s;
    }
    location = /notify {
        orbit_test_sql "SELECT pg_notify('orbit_test_chan', $1)" $arg_p;
    }
    location = /both {
        # the waiter, through a proxy so the test client waits on it
        proxy_pass http://127.0.0.1:$server_port/wait;
    }
--- request
GET /both
--- init
# LISTEN goes out when the waiter arrives: notify until it is heard (at
# most 5 s), not once after a guess at how long that takes
system("(for i in \$(seq 25); do sleep 0.2; curl -s 'http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/notify?p=hello' >/dev/null; done) &");
--- error_code: 200
--- response_body: hello
--- timeout: 5



=== TEST 9: a result much larger than one socket read arrives whole
--- config
    location = /t {
        orbit_test_sql "SELECT repeat('x', 3000000) || 'END'";
    }
--- request
GET /t
--- error_code: 200
--- response_body eval
("x" x 3000000) . "END"
--- timeout: 5



=== TEST 10: a large statement is sent whole (PQflush on write readiness)
--- config
    location = /t {
        orbit_test_sql "SELECT length($1)" $request_body;
        client_body_buffer_size 4m;
        client_max_body_size 4m;
    }
--- request eval
"POST /t\n" . ("y" x 3000000)
--- error_code: 200
--- response_body chomp
3000000
--- timeout: 5



=== TEST 11: results of 20 kB and of 2000 rows: more than libpq reads at once
--- config
    location = /big {
        orbit_test_sql "SELECT length(repeat('x', 20000))::text || ':' || repeat('x', 20000)";
    }
    location = /rows {
        orbit_test_sql "SELECT repeat('r', 500) || n FROM generate_series(1, 2000) AS n";
    }
--- request eval
["GET /big", "GET /rows"]
--- error_code eval
[200, 200]
--- response_body eval
["20000:" . ("x" x 20000), ("r" x 500) . "1"]



=== TEST 12: failover hosts: libpq moves to a new socket, maybe same fd
--- http_config
    orbit_postgres "host=127.0.0.1,127.0.0.1 port=1,$TEST_NGINX_PG_PORT dbname=orbit user=orbit connect_timeout=2" pool=2;
--- config
    location = /t {
        orbit_test_sql "SELECT 'failed over'";
    }
--- request
GET /t
--- error_code: 200
--- response_body: failed over



=== TEST 13: a query timing out before the pool's timeout frees its backend
--- http_config
    orbit_postgres "$TEST_NGINX_PG_DSN" pool=1 timeout=20s;
--- config
    location = /sleep {
        orbit_test_sql "SELECT pg_sleep(10)";
        orbit_test_sql_timeout 300ms;
    }
    location = /pause {
        orbit_test_sql "SELECT pg_sleep(1.5)::text";
    }
    location = /active {
        orbit_test_sql "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(10)' AND state = 'active'";
    }
--- request eval
["GET /sleep", "GET /pause", "GET /active"]
--- error_code eval
[504, 200, 200]
--- response_body eval
["postgres query timed out", "", "0"]
--- timeout: 5



=== TEST 14: a prepared statement: parsed once per connection, then reused
--- http_config
    orbit_postgres "$TEST_NGINX_PG_DSN" pool=1;
    orbit_jobs off;    # its claim would be prepared on the connection too
--- config
    location = /t {
        orbit_test_sql "SELECT $1::int * 2" $arg_n;
        orbit_test_sql_prepare on;
    }
    location = /count {
        orbit_test_sql "SELECT count(*) FROM pg_prepared_statements";
        orbit_test_sql_prepare on;
    }
--- request eval
["GET /t?n=1", "GET /t?n=2", "GET /t?n=21", "GET /count"]
--- error_code eval
[200, 200, 200, 200]
--- response_body eval
["2", "4", "42", "2"]



=== TEST 15: a prepared statement's own error answers its query alone
--- http_config
    orbit_postgres "$TEST_NGINX_PG_DSN" pool=1;
--- config
    location = /bad {
        orbit_test_sql "SELEKT 1";
        orbit_test_sql_prepare on;
    }
    location = /bad-param {
        orbit_test_sql "SELECT $1::int" $arg_v;
        orbit_test_sql_prepare on;
    }
    location = /good {
        orbit_test_sql "SELECT 'still fine'";
        orbit_test_sql_prepare on;
    }
--- request eval
["GET /bad", "GET /bad-param?v=x", "GET /bad-param?v=7", "GET /good"]
--- error_code eval
[502, 502, 200, 200]
--- response_body_like eval
["syntax error", "invalid input syntax", "^7\$", "^still fine\$"]
