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

use Digest::SHA qw(hmac_sha256 sha256_hex);
use JSON::PP ();
use MIME::Base64 qw(encode_base64url);

our @EXPORT = qw(orbit_nginx psql pg_service no_bad_log wait_until
                 api json_of uniq secret jwt_for make_superadmin login
                 make_tenant make_user make_conversation user_token
                 meta_signature);


# An Orbit::Nginx serving `location /api/ { orbit_api; API_CONFIG }` plus
# $opts{config}; the http block names the run's PostgreSQL, Redis and
# secrets (or is $opts{http_config}), then $opts{http_extra}.
sub orbit_nginx {
    my (%opts) = @_;

    my $pool = delete $opts{pool} // 4;
    my $http = delete $opts{http_config}
        // "orbit_postgres \"$ENV{TEST_NGINX_PG_DSN}\" pool=$pool;\n"
         . "orbit_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};\n"
         . "orbit_secrets $ENV{TEST_NGINX_SECRETS};\n";
    $http .= delete $opts{http_extra} // '';
    my $api = delete $opts{api_config} // '';
    my $config = "location /api/ { orbit_api; $api }\n"
               . (delete $opts{config} // '');

    return Orbit::Nginx->new(http_config => $http, config => $config, %opts);
}


my $JSON = JSON::PP->new->canonical->allow_nonref;

sub json_of { return $JSON->encode($_[0]) }


# A REST call: api($t, 'POST', '/api/v1/x', body => {...} | raw => '...',
# token => $jwt, headers => {...}).  Returns the response with ->{json}
# decoded when the body is JSON.
sub api {
    my ($t, $method, $path, %o) = @_;
    my %h = %{ $o{headers} // {} };
    my $body;

    if (exists $o{body}) {
        $body = $JSON->encode($o{body});
        $h{'Content-Type'} //= 'application/json';
    } elsif (exists $o{raw}) {
        $body = $o{raw};
        $h{'Content-Type'} //= 'application/json';
    }
    $h{Authorization} = "Bearer $o{token}" if $o{token};

    my $res = $t->http($method, $path, $body, headers => \%h,
                       timeout => $o{timeout} // 10);
    $res->{json} = eval { $JSON->decode($res->{body}) }
        if ($res->{headers}{'content-type'} // '') =~ m{application/json};
    return $res;
}


# a name no other run or test has used
my $seq = 0;
sub uniq { return sprintf '%s%d%d%d', shift // 'u', $$, time, ++$seq }


# the test run's secrets file, as a hash
sub secret {
    my ($name) = @_;
    open my $fh, '<', $ENV{TEST_NGINX_SECRETS} or die "secrets: $!";
    while (my $line = <$fh>) { return $1 if $line =~ /^\Q$name\E=(.*?)\s*$/ }
    die "no $name in secrets";
}


# an HS256 JWT with these claims, signed with $opts{key} or the secret
sub jwt_for {
    my ($claims, %opts) = @_;
    my $key = $opts{key} // secret('JWT_SECRET');
    my $alg = $opts{alg} // 'HS256';
    my $h = encode_base64url($JSON->encode({ alg => $alg, typ => 'JWT' }));
    my $p = encode_base64url($JSON->encode($claims));
    return "$h.$p." . ($alg eq 'none' ? ''
                       : encode_base64url(hmac_sha256("$h.$p", $key)));
}


# a superadmin straight into the database; returns (email, password)
sub make_superadmin {
    my $email = uniq('root') . '@orbit.test';
    my $password = 'Sup3r-' . uniq();
    open my $fh, '-|', "$ENV{ORBIT_BUILD_DIR}/orbit-admin", 'hash-password',
        $password or die "orbit-admin: $!";
    my $hash = <$fh>;
    close $fh;
    chomp $hash;
    psql("INSERT INTO users (email, name, password_hash, role)"
         . " VALUES ('$email', 'Root', '$hash', 'SUPERADMIN')");
    return ($email, $password);
}


# a tenant straight into the database; returns its id
sub make_tenant {
    my $slug = uniq(shift // 't');
    return psql("INSERT INTO tenants (name, slug, status)"
                . " VALUES ('$slug', '$slug', 'active') RETURNING id");
}


# a user of the tenant with the role (no password to log in with)
sub make_user {
    my ($tid, $role) = @_;
    my $e = uniq(lc $role) . '@orbit.test';
    return psql("INSERT INTO users (tenant_id, email, name, password_hash,"
                . " role) VALUES ('$tid', '$e', 'U', 'x', '$role')"
                . " RETURNING id");
}


# a contact of the tenant (counted, as the API counts them) and a
# conversation with it, assigned to $assignee or nobody; returns its id
my $phones = 0;
sub make_conversation {
    my ($tid, $assignee) = @_;
    my $c = psql(sprintf "WITH c AS (INSERT INTO contacts (tenant_id, phone)"
                 . " VALUES ('$tid', '+1557%07d') RETURNING id, tenant_id),"
                 . " k AS (INSERT INTO tenant_counters AS t (tenant_id,"
                 . " contacts) SELECT tenant_id, 1 FROM c ON CONFLICT"
                 . " (tenant_id, shard) DO UPDATE SET contacts = t.contacts + 1)"
                 . " SELECT id FROM c", ++$phones + $$ % 1000 * 1000);
    my $a = $assignee ? "'$assignee'" : 'NULL';
    return psql("INSERT INTO conversations (tenant_id, contact_id, channel,"
                . " assignee_id) VALUES ('$tid', '$c', 'whatsapp', $a)"
                . " RETURNING id");
}


# an access token of that user, valid 15 minutes (or until $o{exp})
sub user_token {
    my ($uid, $tid, $role, %o) = @_;
    return jwt_for({ userId => $uid, tenantId => $tid, role => $role,
                     iat => int(time) - 10,
                     exp => int($o{exp} // time + 900) });
}


# X-Hub-Signature-256 of a body under the Meta app's secret (or $key)
sub meta_signature {
    my ($body, $key) = @_;
    return 'sha256=' . Digest::SHA::hmac_sha256_hex($body,
                                                    $key // secret('META_APP_SECRET'));
}


# logs in; returns the response's JSON (tokens and user) or dies
sub login {
    my ($t, $email, $password) = @_;
    my $r = api($t, 'POST', '/api/v1/auth/login',
                body => { email => $email, password => $password });
    die "login $email: $r->{status} $r->{body}" unless $r->{status} == 200;
    return $r->{json};
}


# psql as the superuser of the test cluster; returns trimmed output.
sub psql {
    my ($sql, %opts) = @_;
    my $db = $opts{db} // 'orbit';

    # no shell between us and psql: the SQL is passed as it is
    open my $fh, '-|', 'psql', '-X', '-q', '-tA', '-h', '127.0.0.1',
        '-p', $ENV{TEST_NGINX_PG_PORT}, '-U', 'postgres', '-d', $db,
        '-c', $sql
        or die "psql: $!";
    local $/;
    my $out = <$fh> // '';
    close $fh;
    $out =~ s/\s+\z//;
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
