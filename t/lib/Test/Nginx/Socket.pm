package Test::Nginx::Socket;

# A small, self-written stand-in for openresty's Test::Nginx::Socket: same
# block format, same exported API subset, same assertion counts per block,
# built on Test::Base and Orbit::Nginx. See the POD at the end.

use strict;
use warnings;

use Test::Base -base;

use Digest::MD5 ();
use Digest::SHA ();
use File::Path qw(make_path remove_tree);
use File::Spec ();
use List::Util qw(shuffle);
use Time::HiRes qw(sleep);

use Orbit::Nginx ();

our $VERSION = '0.01';

our @EXPORT = qw(
    run_tests run_test repeat_each no_shuffle add_block_preprocessor
    workers master_on master_off master_process_enabled log_level
    no_long_string env_to_nginx server_port server_port_for_client
    html_dir server_root timeout no_root_location worker_connections
    config_preamble add_cleanup_handler add_response_body_check
    bail_out is_str check_accum_error_log plan
);

# ---------------------------------------------------------------------------
# settings (same environment variables as Test::Nginx where they exist)
# ---------------------------------------------------------------------------

our $RepeatEach        = 1;
our $NoShuffle         = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $Workers           = 1;
our $MasterProcess     = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $LogLevel          = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $ServerPort        = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
our $Timeout           = $ENV{TEST_NGINX_TIMEOUT} || 10;
our $ServRoot          = File::Spec->rel2abs($ENV{TEST_NGINX_SERVROOT} || 't/servroot');
our $ForceRestart      = $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} || 0;
our $CheckAccumErrLog  = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG} || 0;
our $WorkerConnections = 1024;
our $NoRootLocation    = 0;
our $ConfigPreamble    = '';
our $NoLongString      = 0;
our $LogSettleTime     = 0.05;    # let log-phase lines reach error.log
$LogSettleTime *= Orbit::Nginx::valgrind_slowdown();
our (@EnvToNginx, @BlockPreprocessors, @CleanupHandlers, @ResponseBodyChecks);

# state of the running server
my ($Nginx, $NginxConf, $PrevConfig, $ErrLogPos);
my @BadLines;        # [alert]/[crit]/[emerg] lines harvested at each stop
my (@VgErrors, @VgLeaks);    # valgrind reports harvested at each stop
my %ExpectedBad;     # such lines that a block's --- error_log asked for
my $FinalCheckDone = 0;
my $NginxVersion;

$ENV{TEST_NGINX_SERVER_ROOT} //= $ServRoot;

# ---------------------------------------------------------------------------
# exported settings API
# ---------------------------------------------------------------------------

sub _getset {
    my ($ref, @args) = @_;
    $$ref = $args[0] if @args;
    return $$ref;
}

sub repeat_each            { return _getset(\$RepeatEach, @_) }
sub workers                { return _getset(\$Workers, @_) }
sub log_level              { return _getset(\$LogLevel, @_) }
sub timeout                { return _getset(\$Timeout, @_) }
sub worker_connections     { return _getset(\$WorkerConnections, @_) }
sub server_port            { return _getset(\$ServerPort, @_) }
sub server_port_for_client { return _getset(\$ServerPort, @_) }
sub config_preamble        { $ConfigPreamble = shift; return }
sub no_shuffle             { $NoShuffle = 1; return }
sub no_long_string         { $NoLongString = 1; return }
sub no_root_location       { $NoRootLocation = 1; return }
sub check_accum_error_log  { $CheckAccumErrLog = 1; return }
sub master_on              { $MasterProcess = 'on'; return }
sub master_off             { $MasterProcess = 'off'; return }
sub html_dir               { return "$ServRoot/html" }
sub server_root            { return $ServRoot }

sub master_process_enabled {
    $MasterProcess = $_[0] ? 'on' : 'off' if @_;
    return $MasterProcess;
}

sub env_to_nginx {
    croak 'env_to_nginx: no arguments specified' unless @_;
    for my $v (@_) {
        croak "env_to_nginx: bad argument value: $v" if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, ($v =~ /\s/ ? "'$v'" : $v);
    }
    return;
}

# Like Test::Nginx, the most recently added preprocessor runs first.
sub add_block_preprocessor (&) { unshift @BlockPreprocessors, shift; return }
sub add_cleanup_handler        { unshift @CleanupHandlers, shift; return }
sub add_response_body_check    { push @ResponseBodyChecks, shift; return }

sub is_str {
    my ($got, $expected, $desc) = @_;
    return Test::More::like($got, $expected, $desc) if ref $expected eq 'Regexp';
    return Test::More::is($got, $expected, $desc);
}

sub bail_out {
    _cleanup();
    Test::More::BAIL_OUT(join '', @_);
}

# Our final error.log check is one extra assertion per file: count it in
# "tests => N" plans, whether given to plan() or on the use line.
{
    no warnings 'redefine';
    *plan = sub {
        my @args = @_;
        $args[1] += 1 if @args >= 2 && $args[0] eq 'tests';
        return Test::More::plan(@args);
    };
}

sub import {
    my @args = @_;
    for my $i (1 .. $#args - 1) {
        if ($args[$i] eq 'tests') {
            $args[$i + 1] += 1;
            last;
        }
    }
    @_ = @args;
    goto &Test::Base::import;
}

# ---------------------------------------------------------------------------
# the runner
# ---------------------------------------------------------------------------

sub run_tests {
    $ENV{TEST_NGINX_SERVER_PORT} //= $ServerPort;
    $ENV{TEST_NGINX_SERVROOT}    //= $ServRoot;
    $ENV{TEST_NGINX_HTML_DIR}    //= html_dir();

    my @blocks = Test::Base::blocks();
    @blocks = shuffle @blocks unless $NoShuffle;
    for my $block (@blocks) {
        $_->($block) for @BlockPreprocessors;
        run_test($block);
    }
    _final_check();
    return;
}

sub run_test {
    my $block = shift;
    return if defined $block->SKIP;
    my $name = $block->name;

    my ($skip_n, $skip_reason) = _skip_spec($block);
    if (defined $skip_n) {
        for (1 .. $RepeatEach) {
            SKIP: { Test::More::skip("$name - $skip_reason", $skip_n) }
        }
        return;
    }

    my $error = _ensure_nginx($block);
    if ($error) {
        _fail_block($block, $error);
        return;
    }

    if (defined(my $init = $block->init)) {
        eval $init;    ## no critic (ProhibitStringyEval)
        bail_out("$name - init failed: $@") if $@;
    }

    for my $rep (0 .. $RepeatEach - 1) {
        _write_user_files($block) if $rep > 0;
        _run_block_once($block, $rep);
    }
    return;
}

# Start or restart nginx if the generated config differs from the running one.
# Returns an error string, or undef when nginx is up with the block's config.
sub _ensure_nginx {
    my $block = shift;
    my $name = $block->name;

    my $config = $block->config;
    if (!defined $config) {
        return "no --- config section and no previous block to inherit one from"
            unless defined $PrevConfig;
        $config = $PrevConfig;
    }
    $PrevConfig = $config;

    my $main = join "\n", grep { defined } $block->main_config, $block->post_main_config;
    my $server = "$ConfigPreamble\n$config\n";
    $server .= "    location / {\n        root html;\n        index index.html index.htm;\n"
             . "    }\n" unless $NoRootLocation;

    my $ngx = Orbit::Nginx->new(
        servroot           => $ServRoot,
        port               => $ServerPort,
        workers            => $Workers,
        master             => ($MasterProcess eq 'on' ? 1 : 0),
        log_level          => $block->log_level || $LogLevel,
        main_config        => $main,
        http_config        => $block->http_config // '',
        config             => $server,
        worker_connections => $WorkerConnections,
        env                => [@EnvToNginx],
    );
    my $text = eval { $ngx->conf_text };
    return "cannot generate nginx.conf: $@" unless defined $text;

    if ($Nginx && !$ForceRestart && $text eq $NginxConf && $Nginx->is_running) {
        $ErrLogPos = $CheckAccumErrLog ? 0 : $Nginx->error_log_size;
        _write_user_files($block);
        return undef;
    }

    _stop_nginx();
    remove_tree(html_dir());
    make_path(html_dir());
    _write_user_files($block);
    if (!eval { $ngx->start; 1 }) {
        _harvest_bad_lines($ngx);
        _harvest_valgrind($ngx);
        return "$@";
    }
    ($Nginx, $NginxConf, $ErrLogPos) = ($ngx, $text, 0);
    return undef;
}

sub _stop_nginx {
    return unless $Nginx;
    $Nginx->stop;
    _harvest_bad_lines($Nginx);
    _harvest_valgrind($Nginx);
    undef $Nginx;
    undef $NginxConf;
    return;
}

sub _harvest_bad_lines {
    my $ngx = shift;
    for my $line (split /\n/, $ngx->error_log) {
        next unless $line =~ /\[(?:alert|crit|emerg)\]/;
        next if $ExpectedBad{$line};
        push @BadLines, $line;
    }
    return;
}

# Under ORBIT_VALGRIND: memory errors (and leaks through orbit_ frames) go
# into the final assertion; other "definitely lost" leaks are diag only.
sub _harvest_valgrind {
    my $ngx = shift;
    return unless Orbit::Nginx::valgrind_enabled();
    push @VgErrors, $ngx->valgrind_errors;
    push @VgLeaks, grep { !Orbit::Nginx::has_orbit_frame($_) } $ngx->valgrind_leaks;
    return;
}

sub _final_check {
    return if $FinalCheckDone++;
    _cleanup();
    my @bad = grep { !$ExpectedBad{$_} } @BadLines;
    my $vg = Orbit::Nginx::valgrind_enabled();
    my $name = 'error.log has no [alert], [crit] or [emerg] lines';
    $name .= ' and valgrind reports no memory errors' if $vg;
    Test::More::ok(!@bad && !@VgErrors, $name) or do {
        Test::More::diag(join "\n", 'offending error.log lines:', @bad) if @bad;
        Test::More::diag(Orbit::Nginx::valgrind_summary(@VgErrors)) if @VgErrors;
    };
    Test::More::diag(scalar(@VgLeaks) . ' "definitely lost" leak report(s) outside orbit'
        . " code (not a failure); first:\n" . $VgLeaks[0]) if @VgLeaks;
    return;
}

sub _cleanup {
    $_->() for @CleanupHandlers;
    _stop_nginx();
    return;
}

my $ParentPid = $$;

END {
    # normal runs stopped nginx in run_tests(); this covers a die() midway
    _stop_nginx() if $Nginx && $$ == $ParentPid;
}

# --- skip_nginx / skip_eval ------------------------------------------------

sub _nginx_version {
    return $NginxVersion if defined $NginxVersion;
    my $bin = Orbit::Nginx::find_nginx_binary();
    my $out = `$bin -v 2>&1` // '';
    $NginxVersion = $out =~ m{/(\d+)\.(\d+)\.(\d+)} ? _canon_version($1, $2, $3) : 0;
    return $NginxVersion;
}

sub _canon_version { return sprintf '%d.%03d%03d', @_ }

sub _skip_spec {
    my $block = shift;
    my $name = $block->name;
    if (defined(my $spec = $block->skip_nginx)) {
        my ($n, $op, @v, $reason);
        if ($spec =~ /^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)(?:\s*:\s*(.*?))?\s*$/s) {
            ($n, $op, @v) = ($1, $2, $3, $4, $5);
            $reason = $6 || "nginx version $op $3.$4.$5";
        } else {
            bail_out("$name - invalid --- skip_nginx spec: $spec");
        }
        my ($have, $want) = (_nginx_version(), _canon_version(@v));
        my %cmp = (
            '<'  => sub { $_[0] < $_[1] },  '<=' => sub { $_[0] <= $_[1] },
            '>'  => sub { $_[0] > $_[1] },  '>=' => sub { $_[0] >= $_[1] },
        );
        return ($n, $reason) if $cmp{$op}->($have, $want);
    }
    if (defined(my $spec = $block->skip_eval)) {
        bail_out("$name - invalid --- skip_eval spec: $spec")
            unless $spec =~ /^\s*(\d+)\s*:\s*(.*)$/s;
        my ($n, $code) = ($1, $2);
        my $skip = eval $code;    ## no critic (ProhibitStringyEval)
        bail_out("$name - skip_eval failed: $@") if $@;
        return ($n, 'skip_eval') if $skip;
    }
    return;
}

# --- user_files ------------------------------------------------------------

sub _write_user_files {
    my $block = shift;
    my $files = $block->user_files or return;
    if (!ref $files) {
        my @list;
        for my $line (split /^/m, $files) {
            if ($line =~ /^>>> (\S+)/) {
                push @list, [$1, ''];
            } elsif (@list) {
                $list[-1][1] .= $line;
            }
        }
        $files = \@list;
    }
    my $env = { TEST_NGINX_SERVER_PORT => $ServerPort, TEST_NGINX_HTML_DIR => html_dir() };
    for my $f (@$files) {
        my ($fname, $body) = @$f;
        my $path = $fname =~ m{^/} ? $fname : html_dir() . "/$fname";
        (my $dir = $path) =~ s{/[^/]*$}{};
        make_path($dir) unless -d $dir;
        open my $out, '>', $path or bail_out("cannot write $path: $!");
        binmode $out;
        print {$out} Orbit::Nginx::expand_env($body // '', $env);
        close $out;
    }
    return;
}

# --- one repetition of one block -----------------------------------------

sub _run_block_once {
    my ($block, $rep) = @_;
    my $name = $block->name;

    my @reqs = _requests_from_block($block);
    my $need_array = @reqs > 1;
    my $timeout = _parse_time($block->timeout) // $Timeout;
    my $wait = _parse_time($block->wait);

    for my $i (0 .. $#reqs) {
        my $res = Orbit::Nginx::http_request($ServerPort, $reqs[$i], timeout => $timeout);
        if ($res->{timed_out}) {
            Test::More::fail("$name - client socket timed out (req $i)")
                unless defined $block->abort;
        } elsif ($res->{error} && $res->{error} =~ /^cannot connect/) {
            Test::More::fail("$name - $res->{error}");
        }

        if (!defined $block->ignore_response) {
            _check_status($block, $res, $i, $need_array);
            _check_raw_headers($block, $res, $i, $need_array);
            _check_headers($block, $res, $i, $need_array);
            _check_body($block, $res, $i, $rep, $need_array);
        }

        sleep $wait * Orbit::Nginx::valgrind_request_factor() if $wait;
        _check_logs($block, $rep);
    }
    return;
}

sub _parse_time {
    my $t = shift;
    return undef unless defined $t && $t =~ /\S/;
    $t =~ s/^\s+|\s+$//g;
    return $1 / 1000 if $t =~ /^([\d.]+)ms$/;
    return $1 if $t =~ /^([\d.]+)s?$/;
    return $t;
}

sub _indexed {
    my ($block, $value, $i, $need_array) = @_;
    if (ref $value eq 'ARRAY') {
        return $value->[$i] if $need_array;
        return $value->[0];
    }
    bail_out($block->name . ' - several requests need array values in the expectations')
        if $need_array;
    return $value;
}

# Raw requests (strings, or arrayrefs of packets) for the block.
sub _requests_from_block {
    my $block = shift;
    my $name = $block->name;

    if (defined(my $raw = $block->raw_request)) {
        return ($raw) unless ref $raw;
        my $delay = _parse_time($block->raw_request_middle_delay);
        my @packets = map {
            my $p = ref $_ ? {%$_} : { value => $_ };
            $p->{delay_before} //= $delay if $delay;
            $p;
        } @$raw;
        delete $packets[0]{delay_before};
        return (\@packets);
    }

    bail_out("$name - --- pipelined_requests is not supported by this harness")
        if defined $block->pipelined_requests;

    my $request = $block->request;
    bail_out("$name - no --- request or --- raw_request section") unless defined $request;
    my $more = $block->more_headers // '';
    my @list = ref $request eq 'ARRAY' ? @$request : ($request);
    my @out;
    for my $i (0 .. $#list) {
        bail_out("$name - packet arrays in --- request are not supported; use raw_request")
            if ref $list[$i];
        my $hdr = ref $more eq 'ARRAY' ? $more->[$i] : $more;
        bail_out("$name - --- more_headers lacks data for request $i") unless defined $hdr;
        push @out, build_request($name, $list[$i], $hdr);
    }
    return @out;
}

sub _parse_more_headers {
    my $text = shift;
    my ($out, $chunked) = ('', 0);
    for my $line (split /\n+/, $text) {
        next if $line =~ /^\s*#/ || $line !~ /\S/;
        my ($key, $val) = split /:\s*/, $line, 2;
        $val //= '';
        $val =~ s/\r$//;
        $chunked = 1 if lc $key eq 'transfer-encoding' && $val eq 'chunked';
        $out .= "$key: $val\r\n";
    }
    return ($out, $chunked);
}

# "METHOD [/uri [HTTP/x.y]]\nbody" -> raw HTTP request, as Test::Nginx does.
sub build_request {
    my ($name, $req, $more_headers) = @_;
    1 while $req =~ s/^\s*#[^\n]+\s+|^\s+//s;
    my ($first, $content) = split /\n/, $req, 2;
    bail_out("$name - request line should be non-empty") unless defined $first && length $first;
    my ($meth, $url, $ver) = $first =~ /^(\S+)(?:[ \t]+(\S+))?(?:[ \t]+(\S+))?\s*$/
        or bail_out("$name - invalid request line: $first");
    $url //= '/';
    $ver //= 'HTTP/1.1';
    $content //= '';

    my ($hdr, $chunked) = _parse_more_headers($more_headers // '');
    my $len = '';
    if (!$chunked && $content ne '' && $hdr !~ /(?:^|\n)Content-Length:/i) {
        $content =~ s/^\s+|\s+$//gs;
        $len = 'Content-Length: ' . length($content) . "\r\n";
    }
    my $head = '';
    $head .= "Host: localhost\r\n" unless $hdr =~ /(?:^|\n)Host:/i;
    $head .= "Connection: close\r\n" unless $hdr =~ /(?:^|\n)Connection/i;
    return "$meth $url $ver\r\n$head$hdr$len\r\n$content";
}

# --- response checks -------------------------------------------------------

sub _check_status {
    my ($block, $res, $i, $need_array) = @_;
    my $name = $block->name;
    my $got = $res->{status} // '';
    if (defined $block->error_code_like) {
        my $pat = _indexed($block, $block->error_code_like, $i, $need_array);
        Test::More::like($got, qr/$pat/sm, "$name - status code ok");
    } elsif (defined $block->error_code) {
        my $want = _indexed($block, $block->error_code, $i, $need_array);
        Test::More::is($got, $want, "$name - status code ok");
    } else {
        Test::More::is($got, 200, "$name - status code ok");
    }
    return;
}

sub _check_raw_headers {
    my ($block, $res, $i, $need_array) = @_;
    my $name = $block->name;
    my $raw = $res->{raw_head} // '';
    if (defined $block->raw_response_headers_like) {
        my $pat = _indexed($block, $block->raw_response_headers_like, $i, $need_array);
        Test::More::like($raw, qr/$pat/s, "$name - raw resp headers like");
    }
    if (defined $block->raw_response_headers_unlike) {
        my $pat = _indexed($block, $block->raw_response_headers_unlike, $i, $need_array);
        Test::More::unlike($raw, qr/$pat/s, "$name - raw resp headers unlike");
    }
    return;
}

# Ordered, de-duplicated "Name: value" / "!Name" lines; value undef = absent.
sub _parse_header_spec {
    my $text = shift // '';
    my (@order, %val);
    for my $line (split /\n/, $text) {
        $line =~ s/^\s+|\s+$//g;
        next if $line eq '';
        my ($key, $v);
        if ($line =~ s/^!\s*//) {
            $key = $line;
        } else {
            ($key, $v) = split /\s*:\s*/, $line, 2;
            $v //= '';
        }
        push @order, $key unless exists $val{$key};
        $val{$key} = $v;
    }
    return map { [$_, $val{$_}] } @order;
}

sub _header_value {
    my ($res, $key) = @_;
    my @v = map { $_->[1] } grep { lc $_->[0] eq lc $key } @{ $res->{raw_headers} || [] };
    return @v ? join(', ', @v) : undef;
}

sub _check_headers {
    my ($block, $res, $i, $need_array) = @_;
    my $name = $block->name;
    if (defined $block->response_headers) {
        my $spec = _indexed($block, $block->response_headers, $i, $need_array);
        for my $h (_parse_header_spec($spec)) {
            my ($key, $want) = @$h;
            if (!defined $want) {
                Test::More::ok(!defined _header_value($res, $key),
                               "$name - header $key not present in the raw headers");
                next;
            }
            $want =~ s/\$ServerPort(?:ForClient)?\b/$ServerPort/g;
            Test::More::is(_header_value($res, $key) // '', $want, "$name - header $key ok");
        }
    } elsif (defined $block->response_headers_like) {
        my $spec = _indexed($block, $block->response_headers_like, $i, $need_array);
        for my $h (_parse_header_spec($spec)) {
            my ($key, $pat) = @$h;
            $pat //= '';
            Test::More::like(_header_value($res, $key) // '', qr/^$pat$/,
                             "$name - header $key like ok");
        }
    }
    return;
}

my %BodyFilters = (
    md5_hex  => \&Digest::MD5::md5_hex,
    sha1_hex => \&Digest::SHA::sha1_hex,
    uc       => sub { uc $_[0] },
    lc       => sub { lc $_[0] },
    ucfirst  => sub { ucfirst $_[0] },
    lcfirst  => sub { lcfirst $_[0] },
    length   => sub { length $_[0] },
);

sub _filter_body {
    my ($block, $body, $i) = @_;
    my $filters = $block->response_body_filters;
    return $body unless defined $filters;
    if (!ref $filters) {
        $filters =~ s/^\s+|\s+$//g;
        $filters = [split /\s+/, $filters];
    } elsif (ref $filters ne 'ARRAY') {
        $filters = [$filters];
    }
    $filters = $filters->[$i] if ref $filters->[0] eq 'ARRAY';
    for my $f (ref $filters eq 'ARRAY' ? @$filters : ($filters)) {
        my $code = ref $f eq 'CODE' ? $f : $BodyFilters{$f}
            or bail_out($block->name . " - unknown response body filter \"$f\"");
        $body = $code->($body);
    }
    return $body;
}

sub _check_body {
    my ($block, $res, $i, $rep, $need_array) = @_;
    my $name = $block->name;
    my $body = _filter_body($block, $res->{body}, $i);

    if (defined $block->response_body) {
        my $want = _indexed($block, $block->response_body, $i, $need_array);
        my $desc = "$name - response_body - response is expected (repeated req $rep, req $i)";
        if (ref $want) {
            Test::More::like($body, $want, $desc);
        } else {
            $want =~ s/\$ServerPort(?:ForClient)?\b/$ServerPort/g if defined $want;
            Test::More::is($body, $want, $desc);
        }
    } elsif (defined $block->response_body_like || defined $block->response_body_unlike) {
        my $type = defined $block->response_body_like ? 'like' : 'unlike';
        my $spec = $type eq 'like' ? $block->response_body_like : $block->response_body_unlike;
        my $pat = _indexed($block, $spec, $i, $need_array);
        $pat =~ s/\$ServerPort(?:ForClient)?\b/$ServerPort/g unless ref $pat;
        my $desc = "$name - response_body_$type - response is expected";
        if ($type eq 'like') {
            Test::More::like($body, qr/$pat/s, $desc);
        } else {
            Test::More::unlike($body, qr/$pat/s, $desc);
        }
    }
    $_->($block, $body, $i, $rep, 0) for @ResponseBodyChecks;
    return;
}

# --- log checks ------------------------------------------------------------

# A section value as a list of patterns: text -> one literal per line,
# qr// -> itself, arrayref (from "eval") -> its elements.
sub _patterns {
    my $value = shift;
    return () unless defined $value;
    return ($value) if ref $value eq 'Regexp';
    return @$value if ref $value eq 'ARRAY';
    chomp(my $text = $value);
    return split /\n+/, $text;
}

sub _matches {
    my ($line, $pat) = @_;
    return ref $pat ? $line =~ $pat : index($line, $pat) >= 0;
}

sub _fmt {
    my $s = shift;
    chomp $s;
    $s =~ s/"/\\"/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\n/\\n/g;
    return $s;
}

sub _read_lines {
    my ($path, $offset) = @_;
    open my $fh, '<', $path or return [];
    seek $fh, $offset, 0 if $offset;
    my @lines = <$fh>;
    close $fh;
    return \@lines;
}

sub _check_logs {
    my ($block, $rep) = @_;
    my $need_err = defined $block->error_log || defined $block->no_error_log
                || defined $block->grep_error_log;
    my $need_acc = defined $block->access_log || defined $block->no_access_log;
    return unless $need_err || $need_acc;

    sleep $LogSettleTime;
    if ($need_err) {
        my $lines = _read_lines($Nginx->error_log_path, $ErrLogPos);
        $ErrLogPos += length join '', @$lines unless $CheckAccumErrLog;
        _check_grep_log($block, $rep, $lines);
        _check_present($block, $rep, $lines, 'error_log', 'error.log', 1);
        _check_absent($block, $rep, $lines, 'no_error_log', 'error.log');
    }
    if ($need_acc) {
        my $lines = _read_lines($Nginx->access_log_path, 0);
        _check_present($block, $rep, $lines, 'access_log', 'access.log', 0);
        _check_absent($block, $rep, $lines, 'no_access_log', 'access.log');
    }
    return;
}

sub _check_present {
    my ($block, $rep, $lines, $section, $file, $is_error_log) = @_;
    my $name = $block->name;
    for my $pat (_patterns($block->$section)) {
        my @hits = grep { _matches($_, $pat) } @$lines;
        if ($is_error_log) {
            for my $hit (@hits) {
                (my $l = $hit) =~ s/\n$//;
                $ExpectedBad{$l} = 1 if $l =~ /\[(?:alert|crit|emerg)\]/;
            }
        }
        Test::More::ok(scalar @hits, @hits
            ? "$name - pattern \"$pat\" matches a line in $file (req $rep)"
            : "$name - pattern \"$pat\" should match a line in $file (req $rep)");
    }
    return;
}

sub _check_absent {
    my ($block, $rep, $lines, $section, $file) = @_;
    my $name = $block->name;
    for my $pat (_patterns($block->$section)) {
        my $p = _fmt("$pat");
        my ($hit) = grep { _matches($_, $pat) } @$lines;
        if (defined $hit) {
            my $ln = _fmt($hit);
            Test::More::fail("$name - pattern \"$p\" should not match any line in $file"
                             . " but matches line \"$ln\" (req $rep)");
        } else {
            Test::More::pass("$name - pattern \"$p\" does not match a line in $file (req $rep)");
        }
    }
    return;
}

sub _check_grep_log {
    my ($block, $rep, $lines) = @_;
    my $name = $block->name;
    my $pat = $block->grep_error_log;
    return unless defined $pat;
    $pat = $pat->[$rep] if ref $pat eq 'ARRAY';
    my $want = $block->grep_error_log_out;
    bail_out("$name - --- grep_error_log needs --- grep_error_log_out") unless defined $want;
    $want = $want->[$rep] if ref $want eq 'ARRAY';

    my $got = '';
    for my $line (@$lines) {
        my $m = ref $pat ? ($line =~ $pat ? $& : undef)
                         : (index($line, $pat) >= 0 ? $pat : undef);
        $got .= "$m\n" if defined $m && $m !~ /\n/;
    }
    is_str($got, $want, "$name - grep_error_log_out (req $rep)");
    return;
}

# --- a block that cannot run ----------------------------------------------

# Number of assertions one repetition of the block would make.
sub _block_count {
    my $block = shift;
    my @reqs = eval { _requests_from_block($block) };
    my $nreq = @reqs || 1;
    my $per_req = 0;
    if (!defined $block->ignore_response) {
        $per_req += 1;
        $per_req += 1 if defined $block->raw_response_headers_like;
        $per_req += 1 if defined $block->raw_response_headers_unlike;
        my $spec = $block->response_headers // $block->response_headers_like;
        $spec = $spec->[0] if ref $spec eq 'ARRAY';
        my @headers = defined $spec ? _parse_header_spec($spec) : ();
        $per_req += @headers;
        $per_req += 1 if defined $block->response_body
                      || defined $block->response_body_like
                      || defined $block->response_body_unlike;
    }
    $per_req += 1 if defined $block->grep_error_log;
    for my $section (qw(error_log no_error_log access_log no_access_log)) {
        my @patterns = _patterns($block->$section);
        $per_req += @patterns;
    }
    return $nreq * $per_req;
}

sub _fail_block {
    my ($block, $error) = @_;
    my $name = $block->name;
    my $n = _block_count($block);
    for (1 .. $RepeatEach) {
        Test::More::fail("$name - nginx is not serving this block");
        Test::More::diag($error) if $_ == 1;
        SKIP: { Test::More::skip("$name - nginx is not serving this block", $n - 1) if $n > 1 }
    }
    return;
}

1;

__END__

=head1 NAME

Test::Nginx::Socket - OrbitDesk's own runner for openresty-style nginx test blocks

=head1 SYNOPSIS

    use Test::Nginx::Socket 'no_plan';     # or: plan tests => repeat_each() * 2 * blocks();

    repeat_each(2);
    no_shuffle();
    add_block_preprocessor(sub {
        my $block = shift;
        $block->set_value(no_error_log => "[alert]") unless defined $block->no_error_log;
    });
    run_tests();

    __DATA__

    === TEST 1: hello
    --- config
        location /t { return 200 "hello\n"; }
    --- request
    GET /t
    --- response_body
    hello

=head1 DESCRIPTION

This module is written from scratch for OrbitDesk. It implements the subset
of openresty's Test::Nginx::Socket that our F<t/*.t> files use, with the same
block format, exported functions and per-block assertion counts, so the same
files also run under the real Test::Nginx. It runs on Debian's Test::Base
and on L<Orbit::Nginx>.

=head2 Exported functions

run_tests, run_test, repeat_each, no_shuffle, add_block_preprocessor,
workers, master_on, master_off, master_process_enabled, log_level,
no_long_string, env_to_nginx, server_port, server_port_for_client,
html_dir, server_root, timeout, no_root_location, worker_connections,
config_preamble, add_cleanup_handler, add_response_body_check, bail_out,
is_str, check_accum_error_log, plan; plus everything Test::Base exports
(blocks, is, like, diag, ...).

=head2 Sections

config, main_config, post_main_config, http_config, user_files, init,
request (string, or an array of strings through C<eval>), raw_request
(string or array of packets), raw_request_middle_delay, more_headers,
error_code, error_code_like, response_body (string, or qr// through
C<eval>), response_body_like, response_body_unlike,
response_body_filters, response_headers ("Name: value", "!Name"),
response_headers_like, raw_response_headers_like,
raw_response_headers_unlike, error_log, no_error_log, grep_error_log,
grep_error_log_out, access_log, no_access_log, timeout, wait, abort,
ignore_response, log_level, skip_nginx, skip_eval, plus Test::Base's
ONLY, SKIP and LAST. Not supported: pipelined_requests, packet arrays in
request, http2/http3, tcp_listen/udp_listen, stap, must_die,
shutdown_error_log, todo.

=head2 Differences from the real Test::Nginx

=over

=item * B<Extra final assertion.> After the last block, run_tests() stops
nginx and makes ONE more assertion: no C<[alert]>, C<[crit]> or C<[emerg]>
line in any error.log written during the file (including lines written at
shutdown, such as "open socket left in connection"). Lines that a block's
C<--- error_log> explicitly expected are exempt. C<plan tests =E<gt> N> is
raised by one for it automatically. Under the real Test::Nginx this extra
check does not exist (it only warns about such lines), so the plan there is
exactly N.

=item * B<Valgrind.> With C<ORBIT_VALGRIND=1> nginx runs under memcheck (see
L<Orbit::Nginx/VALGRIND>); client timeouts and C<--- wait> are multiplied
by ORBIT_VALGRIND_REQUEST_FACTOR (5), the log settle time by
ORBIT_VALGRIND_SLOWDOWN (10). Memory errors, and "definitely lost" leaks
through an C<orbit_> frame, from every nginx of the file fail the same
final assertion (so the count does not change); other leaks are a diag.

=item * nginx is restarted only when the generated nginx.conf changes
between blocks (set TEST_NGINX_FORCE_RESTART_ON_TEST=1 to restart for every
block, which is the real module's default). Each block checks only the
error.log lines written since the block started.

=item * nginx listens on 127.0.0.1 only; worker_connections is 1024
(the real default is 64); the default timeout is 10 s (real: 3 s).

=item * An absent header (C<!Name>) is matched case-insensitively, which is
stricter than the real module.

=item * If nginx cannot start for a block, the block fails (one failure,
the rest of its assertions skipped) instead of bailing out of the file.

=item * Test names are "TEST n: title - ..." without the script name prefix.

=back

=head2 Environment

TEST_NGINX_SERVER_PORT (or TEST_NGINX_PORT), TEST_NGINX_SERVROOT,
TEST_NGINX_BINARY, TEST_NGINX_LOAD_MODULES, TEST_NGINX_LOG_LEVEL (debug),
TEST_NGINX_MASTER_PROCESS (off), TEST_NGINX_NO_SHUFFLE, TEST_NGINX_TIMEOUT,
TEST_NGINX_FORCE_RESTART_ON_TEST, TEST_NGINX_CHECK_ACCUM_ERR_LOG,
TEST_NGINX_WORKER_USER, and any TEST_NGINX_* used in config text.

=cut
