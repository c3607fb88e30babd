# The Redis driver (src/io/orbit_redis.c) seen through the diagnostics of
# ngx_modules/ngx_http_orbit_test_redis.c: commands and their replies,
# pub/sub, timeouts, client aborts, a Redis restart, commands refused on
# the shared connection, and a server that accepts and then rejects us.
#
# Needs redis-server on 127.0.0.1:$TEST_NGINX_REDIS_PORT (default 16390);
# when none answers there, this file starts one and stops it at the end.
# TEST 14 shuts that Redis down and starts it again.  The last test runs a
# fake server on 127.0.0.1:$TEST_NGINX_FAKE_REDIS_PORT (default 16490).
#
# TEST 20 is meant for ORBIT_VALGRIND=1 too: it frees a pool that holds a
# command the driver is still handling.

use strict;
use warnings;

use IO::Socket::INET ();
use POSIX ();
use Time::HiRes qw(sleep time);

use Test::Nginx::Socket 'no_plan';

our $RedisPort = $ENV{TEST_NGINX_REDIS_PORT} ||= 16390;
our $FakeRedisPort = $ENV{TEST_NGINX_FAKE_REDIS_PORT} ||= 16490;
our @Children;

# One RESP command on a fresh connection.  Simple replies come back as
# their line ("+PONG", ":1", "-ERR ..."), bulk strings as their value,
# arrays as array refs; undef when Redis does not answer.
sub redis_command {
    my $sock = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1',
        PeerPort => $RedisPort,
        Timeout  => 1,
    ) or return undef;
    my $req = '*' . scalar(@_) . "\r\n"
            . join('', map { '$' . length($_) . "\r\n$_\r\n" } @_);
    print {$sock} $req;
    my $reply = redis_read($sock);
    close $sock;
    return $reply;
}

sub redis_read {
    my $sock = shift;
    my $line = <$sock>;
    return undef unless defined $line;
    $line =~ s/\r\n\z//;
    my ($type, $n) = (substr($line, 0, 1), substr($line, 1));
    if ($type eq '$') {
        return undef if $n < 0;
        read($sock, my $buf, $n + 2);
        return substr($buf, 0, $n);
    }
    if ($type eq '*') {
        return undef if $n < 0;
        return [map { redis_read($sock) } 1 .. $n];
    }
    return $line;
}

sub redis_up { return (redis_command('PING') // '') eq '+PONG' }

sub redis_config {
    my $reply = redis_command('CONFIG', 'GET', shift);
    return ref $reply && @$reply == 2 ? $reply->[1] : undef;
}

# Starts Redis on $RedisPort; %conf (pidfile, logfile, dir) lets a Redis we
# shut down come back as its owner (tools/orbit test) knows it.
sub redis_start {
    my %conf = @_;
    $conf{$_} = undef for grep { !length($conf{$_} // '') } keys %conf;
    system('redis-server', '--port', $RedisPort, '--bind', '127.0.0.1',
           '--daemonize', 'yes', '--save', '', '--appendonly', 'no',
           '--dir', $conf{dir} // '/tmp',
           '--pidfile', $conf{pidfile} // "/tmp/orbit-t-redis-$RedisPort.pid",
           '--logfile', $conf{logfile} // "/tmp/orbit-t-redis-$RedisPort.log");
    for (1 .. 150) {
        return 1 if redis_up();
        sleep 0.02;
    }
    return 0;
}

# Runs $code in a child process (never returns in the child).
sub background {
    my $code = shift;
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        $code->();
        POSIX::_exit(0);
    }
    push @Children, $pid;
    return;
}

# PUBLISH until a subscriber hears it (the waiter may not be subscribed yet).
sub publish_until_heard {
    my ($channel, $message) = @_;
    background(sub {
        for (1 .. 100) {
            last if (redis_command('PUBLISH', $channel, $message) // '')
                    =~ /^:[1-9]/;
            sleep 0.05;
        }
    });
    return;
}

# Once Redis is gone, start it again after $delay seconds, as it was.
our %RedisConf;

sub restart_redis_when_down {
    my $delay = shift;
    %RedisConf = map { $_ => redis_config($_) } qw(pidfile logfile dir);
    background(sub {
        for (1 .. 250) {
            last unless redis_up();
            sleep 0.02;
        }
        sleep $delay;
        redis_start(%RedisConf);
    });
    return;
}

# Waits (at most $secs, scaled under valgrind) until error.log has, past
# the point where we started looking, a line matching each pattern.
sub wait_for_error_log {
    my ($secs, @patterns) = @_;
    my $path = Test::Nginx::Socket::server_root() . '/logs/error.log';
    my $from = -s $path // 0;
    my $end = time + $secs * Orbit::Nginx::valgrind_slowdown();
    while (time < $end) {
        if (open my $fh, '<', $path) {
            seek $fh, $from, 0;
            my $text = do { local $/; <$fh> } // '';
            close $fh;
            return 1 unless grep { $text !~ $_ } @patterns;
        }
        sleep 0.1;
    }
    return 0;
}

# A server that accepts, answers what Redis answers past maxclients, and
# closes, for $secs seconds.  Listening when this returns.
sub fake_redis_rejecting {
    my $secs = shift;
    my $srv = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1',
        LocalPort => $FakeRedisPort,
        Listen    => 128,
        ReuseAddr => 1,
        Timeout   => 0.1,
    ) or die "cannot listen on 127.0.0.1:$FakeRedisPort: $!\n";
    background(sub {
        my $end = time + $secs;
        while (time < $end) {
            my $c = $srv->accept or next;
            print {$c} "-ERR max number of clients reached\r\n";
            close $c;
        }
    });
    close $srv;
    return;
}

my $StartedRedis = 0;
if (!redis_up()) {
    redis_start() or die "cannot start redis-server on port $RedisPort\n";
    $StartedRedis = 1;
}

END {
    local $?;    # waitpid and system would change the exit status
    for my $pid (@Children) {
        kill 'TERM', $pid if waitpid($pid, POSIX::WNOHANG()) == 0;
        waitpid($pid, 0);
    }
    @Children = ();
    if ($StartedRedis) {
        redis_command('SHUTDOWN', 'NOSAVE');
    } elsif (!redis_up()) {
        redis_start(%RedisConf);    # leave the Redis we found running
    }
}

my $http_config = <<'_EOC_';
    orbit_redis             127.0.0.1:$TEST_NGINX_REDIS_PORT;
    orbit_test_redis_probe  orbit:t:probe;
_EOC_

my $config = <<'_EOC_';
    location = /set      { orbit_test_redis SET $arg_k $arg_v; }
    location = /get      { orbit_test_redis GET $arg_k; }
    location = /del      { orbit_test_redis DEL $arg_k; }
    location = /incr     { orbit_test_redis INCR $arg_k; }
    location = /push     { orbit_test_redis RPUSH $arg_k $arg_a $arg_b; }
    location = /range    { orbit_test_redis LRANGE $arg_k 0 -1; }
    location = /publish  { orbit_test_redis PUBLISH $arg_ch $arg_m; }
    location = /numsub   { orbit_test_redis PUBSUB NUMSUB $arg_ch; }
    location = /subscribe { orbit_test_redis SUBSCRIBE $arg_ch; }
    location = /blpop    { orbit_test_redis BLPOP orbit:t:never 3; }
    location = /shutdown { orbit_test_redis SHUTDOWN NOSAVE; }
    location = /ping     { orbit_test_redis PING; }
    location = /cmd      { orbit_test_redis $arg_a $arg_b $arg_c; }
    location = /pair     { orbit_test_redis_pair 200ms; }
    location = /wait     { orbit_test_redis_wait $arg_ch 3s; }
    location = /wait-short { orbit_test_redis_wait $arg_ch 300ms; }
    location = /pause    { orbit_test_redis_wait orbit:t:nobody 2500ms; }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(http_config => $http_config)
        unless defined $block->http_config;
    $block->set_value(config => $config) unless defined $block->config;
    $block->set_value(no_error_log => "[alert]\n[crit]")
        unless defined $block->no_error_log;
});

master_on();
workers(1);
no_shuffle();

run_tests();

__DATA__

=== TEST 1: SET then GET
--- request eval
["GET /set?k=orbit:t:a&v=hello", "GET /get?k=orbit:t:a"]
--- error_code eval
[200, 200]
--- response_body eval
["OK\n", "hello\n"]



=== TEST 2: INCR answers the new value
--- request eval
["GET /del?k=orbit:t:n", "GET /incr?k=orbit:t:n", "GET /incr?k=orbit:t:n"]
--- error_code eval
[200, 200, 200]
--- response_body eval
[qr/^[01]\n\z/, "1\n", "2\n"]



=== TEST 3: an error reply is a 502 with the error text
--- request eval
["GET /set?k=orbit:t:s&v=text", "GET /incr?k=orbit:t:s"]
--- error_code eval
[200, 502]
--- response_body eval
["OK\n", "ERR value is not an integer or out of range\n"]



=== TEST 4: a missing key is nil
--- request eval
["GET /del?k=orbit:t:missing", "GET /get?k=orbit:t:missing"]
--- error_code eval
[200, 200]
--- response_body eval
[qr/^[01]\n\z/, "(nil)\n"]



=== TEST 5: an array reply, one element per line
--- request eval
["GET /del?k=orbit:t:list", "GET /push?k=orbit:t:list&a=x&b=y",
 "GET /range?k=orbit:t:list"]
--- error_code eval
[200, 200, 200]
--- response_body eval
[qr/^[01]\n\z/, "2\n", "x\ny\n"]



=== TEST 6: SUBSCRIBE is refused on the command connection
--- request
GET /subscribe?ch=orbit:t:x
--- error_code: 500
--- error_log
redis: use orbit_redis_subscribe()



=== TEST 7: PUBLISH reaches a waiting request
--- init
main::publish_until_heard('orbit:t:room', 'hello room');
--- request
GET /wait?ch=orbit:t:room
--- error_code: 200
--- response_body
hello room



=== TEST 8: the waiter let go of its subscription
--- request
GET /numsub?ch=orbit:t:room
--- response_body
orbit:t:room
0



=== TEST 9: no message: 504, and the subscription is dropped
--- request eval
["GET /wait-short?ch=orbit:t:quiet", "GET /numsub?ch=orbit:t:quiet"]
--- error_code eval
[504, 200]
--- response_body eval
["timeout\n", "orbit:t:quiet\n0\n"]



=== TEST 10: a client that gives up while waiting
--- request
GET /wait?ch=orbit:t:gone
--- timeout: 0.3
--- abort
--- ignore_response
--- wait: 0.3



=== TEST 11: ... leaves no subscription behind
--- request
GET /numsub?ch=orbit:t:gone
--- response_body
orbit:t:gone
0



=== TEST 12: a command Redis does not answer in time is a 504
--- request
GET /blpop
--- error_code: 504
--- response_body
redis timeout
--- error_log eval
qr/\[error\] .*redis command to 127\.0\.0\.1:\d+ timed out, reconnecting/
--- wait: 0.5



=== TEST 13: the worker's probe subscription hears PUBLISH
--- request
GET /publish?ch=orbit:t:probe&m=before-restart
--- response_body
1
--- error_log
orbit test redis probe: "before-restart" on "orbit:t:probe"



=== TEST 14: Redis goes away: prompt errors, no hang
--- init
main::restart_redis_when_down(0.8);
--- request eval
["GET /shutdown", "GET /get?k=orbit:t:a", "GET /publish?ch=orbit:t:x&m=y"]
--- timeout: 0.5
--- error_code eval
[502, 503, 503]
--- response_body eval
["redis connection lost\n", "redis unavailable\n", "redis unavailable\n"]



=== TEST 15: Redis is back: both connections come back
"restored" once they stayed up for 2 s.
--- init
main::wait_for_error_log(10,
    qr/redis command connection to \S+ restored/,
    qr/redis subscriber connection to \S+ restored/);
--- request
GET /ping
--- error_code: 200
--- response_body
PONG
--- error_log eval
[qr/\[warn\] .*redis command connection to 127\.0\.0\.1:\d+ restored/,
 qr/\[warn\] .*redis subscriber connection to 127\.0\.0\.1:\d+ restored/]



=== TEST 16: commands succeed again
--- request eval
["GET /set?k=orbit:t:b&v=again", "GET /get?k=orbit:t:b"]
--- error_code eval
[200, 200]
--- response_body eval
["OK\n", "again\n"]



=== TEST 17: the subscription made before the restart hears messages again
--- request
GET /publish?ch=orbit:t:probe&m=after-restart
--- response_body
1
--- error_log
orbit test redis probe: "after-restart" on "orbit:t:probe"



=== TEST 18: CLIENT REPLY is refused: the next caller still gets its reply
--- request eval
["GET /set?k=orbit:t:c&v=mine", "GET /cmd?a=CLIENT&b=REPLY&c=SKIP",
 "GET /get?k=orbit:t:c"]
--- timeout: 3
--- error_code eval
[200, 500, 200]
--- response_body_like eval
[qr/^OK\n\z/, qr//, qr/^mine\n\z/]



=== TEST 19: commands that change the shared connection's state are refused
--- request eval
["GET /cmd?a=SELECT&b=1", "GET /cmd?a=multi", "GET /cmd?a=Exec",
 "GET /cmd?a=DISCARD", "GET /cmd?a=WATCH&b=orbit:t:c", "GET /cmd?a=UNWATCH",
 "GET /cmd?a=client&b=reply&c=on", "GET /get?k=orbit:t:c"]
--- error_code eval
[500, 500, 500, 500, 500, 500, 500, 200]
--- response_body_like eval
[qr//, qr//, qr//, qr//, qr//, qr//, qr//, qr/^mine\n\z/]



=== TEST 20: a timeout while the same request has another command pending
The BLPOP times out with a PING queued behind it; the timeout is reported
before the connection drop fails the PING, whose handler would free the
BLPOP's cmd along with the request.
--- request
GET /pair
--- timeout: 3
--- error_code: 504
--- response_body
redis timeout
--- error_log eval
qr/\[error\] .*redis command to 127\.0\.0\.1:\d+ timed out, reconnecting/



=== TEST 21: a server that accepts then rejects: reconnects back off
Without the backoff a reconnect came every 100 ms (about 30 in 3 s).
--- http_config
    orbit_redis  127.0.0.1:$TEST_NGINX_FAKE_REDIS_PORT;
--- config
    location = /pause { orbit_test_redis_wait orbit:t:nobody 3s; }
--- init
main::fake_redis_rejecting(5);
--- request
GET /pause
--- timeout: 5
--- error_code: 504
--- response_body
timeout
--- grep_error_log eval
qr/redis command connection to \S+ lost: ERR max number of clients reached/
--- grep_error_log_out eval
qr/\A(?:[^\n]+\n){1,6}\z/
--- no_error_log
[alert]
[crit]
restored
