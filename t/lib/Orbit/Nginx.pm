package Orbit::Nginx;

# Procedural nginx test helper (nginx-tests style): generate a config under
# a server root, start/stop/reload a daemonized nginx, read its error log,
# and talk raw HTTP/1.x to it with core-Perl sockets only.

use strict;
use warnings;

use Carp qw(croak);
use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use Exporter qw(import);
use File::Path qw(make_path remove_tree);
use File::Spec ();
use IO::Select ();
use IO::Socket::INET ();
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);

our $VERSION = '0.01';

our @EXPORT = qw(http_request http_get http parallel_requests);
our @EXPORT_OK = qw(build_request parse_response expand_env find_nginx_binary);

# Under ORBIT_VALGRIND nginx runs inside memcheck, which is 10-50 times
# slower: startup/stop/reload waits are multiplied by ORBIT_VALGRIND_SLOWDOWN
# (default 10) and client timeouts by ORBIT_VALGRIND_REQUEST_FACTOR (5).
our $VALGRIND = $ENV{ORBIT_VALGRIND} ? 1 : 0;
our $SLOWDOWN = $VALGRIND ? ($ENV{ORBIT_VALGRIND_SLOWDOWN} || 10) : 1;
our $REQUEST_FACTOR = $VALGRIND ? ($ENV{ORBIT_VALGRIND_REQUEST_FACTOR} || 5) : 1;

my $START_TIMEOUT = 10 * $SLOWDOWN;
my $STOP_TIMEOUT  = 10 * $SLOWDOWN;

sub valgrind_enabled        { return $VALGRIND }
sub valgrind_slowdown       { return $SLOWDOWN }
sub valgrind_request_factor { return $REQUEST_FACTOR }

# ---------------------------------------------------------------------------
# construction and configuration
# ---------------------------------------------------------------------------

sub new {
    my ($class, %opts) = @_;

    my $servroot = $opts{servroot} // $ENV{TEST_NGINX_SERVROOT} // 't/servroot';
    $servroot = File::Spec->rel2abs($servroot);
    $servroot =~ s{/+$}{};

    my $modules = $opts{load_modules};
    if (!defined $modules) {
        $modules = [grep { length } split /\s+/, $ENV{TEST_NGINX_LOAD_MODULES} // ''];
    } elsif (!ref $modules) {
        $modules = [grep { length } split /\s+/, $modules];
    }

    my $self = bless {
        servroot    => $servroot,
        port        => $opts{port} || $ENV{TEST_NGINX_SERVER_PORT} || 1984,
        workers     => $opts{workers} // 1,
        master      => $opts{master} // 1,
        main_config => $opts{main_config} // '',
        http_config => $opts{http_config} // '',
        config      => $opts{config} // '',
        log_level   => $opts{log_level} // 'info',
        load_modules => $modules,
        worker_connections => $opts{worker_connections} // 1024,
        env         => $opts{env} // [],
        user        => $opts{user} // $ENV{TEST_NGINX_WORKER_USER},
        binary      => $opts{binary} // find_nginx_binary(),
    }, $class;

    return $self;
}

sub find_nginx_binary {
    return $ENV{TEST_NGINX_BINARY} if $ENV{TEST_NGINX_BINARY};
    for my $dir (split /:/, $ENV{PATH} // '') {
        next if $dir eq '';
        my $path = "$dir/nginx";
        return $path if -f $path && -x _;
    }
    return '/usr/sbin/nginx';
}

# Simple accessors; setters return the object so calls can be chained.
for my $field (qw(servroot port workers master main_config http_config config
                  log_level load_modules worker_connections env binary user))
{
    no strict 'refs';
    *{$field} = sub {
        my $self = shift;
        return $self->{$field} unless @_;
        $self->{$field} = shift;
        return $self;
    };
}

sub conf_dir       { return $_[0]{servroot} . '/conf' }
sub conf_path      { return $_[0]{servroot} . '/conf/nginx.conf' }
sub log_dir        { return $_[0]{servroot} . '/logs' }
sub html_dir       { return $_[0]{servroot} . '/html' }
sub pid_path       { return $_[0]{servroot} . '/logs/nginx.pid' }
sub error_log_path { return $_[0]{servroot} . '/logs/error.log' }
sub access_log_path { return $_[0]{servroot} . '/logs/access.log' }

# Values for $TEST_NGINX_* that this instance defines itself; they win over
# %ENV so that an instance on another port/servroot expands consistently.
sub env_defaults {
    my $self = shift;
    return {
        TEST_NGINX_SERVER_PORT => $self->{port},
        TEST_NGINX_SERVROOT    => $self->{servroot},
        TEST_NGINX_SERVER_ROOT => $self->{servroot},
        TEST_NGINX_HTML_DIR    => $self->html_dir,
    };
}

# Replace $TEST_NGINX_FOO and ${TEST_NGINX_FOO}; unknown names are fatal.
sub expand_env {
    my ($text, $extra) = @_;
    return $text unless defined $text;
    $extra ||= {};
    my $lookup = sub {
        my $name = shift;
        return $extra->{$name} if defined $extra->{$name};
        return $ENV{$name} if defined $ENV{$name};
        croak "environment variable $name is not defined (used in nginx config)";
    };
    $text =~ s{\$\{(TEST_NGINX_\w+)\}|\$(TEST_NGINX_[A-Z0-9_]+)}{$lookup->($1 // $2)}ge;
    return $text;
}

sub conf_text {
    my $self = shift;

    my $root = $self->{servroot};
    my $env = $self->env_defaults;
    my $main = expand_env($self->{main_config}, $env);
    my $http = expand_env($self->{http_config}, $env);
    my $config = expand_env($self->{config}, $env);

    my $text = '';
    $text .= "daemon on;\n";
    $text .= 'master_process ' . ($self->{master} ? 'on' : 'off') . ";\n";
    $text .= "worker_processes $self->{workers};\n";
    $text .= "error_log logs/error.log $self->{log_level};\n";
    $text .= "pid logs/nginx.pid;\n";
    if (defined $self->{user} && length $self->{user}) {
        $text .= "user $self->{user};\n";
    } elsif ($> == 0) {
        $text .= "user root;\n";
    }
    $text .= 'load_module ' . File::Spec->rel2abs($_) . ";\n" for @{ $self->{load_modules} };
    $text .= "env $_;\n" for @{ $self->{env} };
    $text .= "\n$main\n" if length $main;
    $text .= "\nevents {\n    worker_connections $self->{worker_connections};\n}\n\n";
    $text .= "http {\n";
    $text .= "    access_log logs/access.log;\n";
    for my $kind (qw(client_body proxy fastcgi uwsgi scgi)) {
        $text .= "    ${kind}_temp_path $root/${kind}_temp;\n";
    }
    $text .= "    default_type text/plain;\n";
    $text .= "    keepalive_timeout 68;\n";
    $text .= "\n$http\n" if length $http;
    $text .= "    server {\n";
    $text .= "        listen 127.0.0.1:$self->{port};\n";
    $text .= "        server_name localhost;\n";
    $text .= "        client_max_body_size 30M;\n";
    $text .= "\n$config\n";
    $text .= "    }\n";
    $text .= "}\n";
    return $text;
}

sub write_conf {
    my $self = shift;
    my $text = $self->conf_text;    # may croak on unknown $TEST_NGINX_*
    make_path($self->conf_dir, $self->log_dir, $self->html_dir);
    my $path = $self->conf_path;
    open my $fh, '>', $path or croak "cannot write $path: $!";
    print {$fh} $text;
    close $fh or croak "cannot write $path: $!";
    return $path;
}

# Write a file under html/ (or an absolute path); creates parent dirs.
sub write_file {
    my ($self, $name, $content) = @_;
    my $path = $name =~ m{^/} ? $name : $self->html_dir . "/$name";
    (my $dir = $path) =~ s{/[^/]*$}{};
    make_path($dir) if length $dir && !-d $dir;
    open my $fh, '>', $path or croak "cannot write $path: $!";
    binmode $fh;
    print {$fh} $content // '';
    close $fh or croak "cannot write $path: $!";
    return $path;
}

# ---------------------------------------------------------------------------
# process control
# ---------------------------------------------------------------------------

sub _read_pid_file {
    my $path = shift;
    open my $fh, '<', $path or return undef;
    my $pid = <$fh>;
    close $fh;
    return undef unless defined $pid && $pid =~ /^\s*(\d+)\s*$/;
    return $1;
}

# True when $pid is a live process (zombies count as gone).
sub _alive {
    my $pid = shift;
    return 0 unless $pid && kill 0, $pid;
    if (open my $fh, '<', "/proc/$pid/stat") {
        my $stat = <$fh> // '';
        close $fh;
        return 0 if $stat =~ /^\d+ \(.*\) Z /s;
    }
    return 1;
}

sub _is_nginx_process {
    my $pid = shift;
    open my $fh, '<', "/proc/$pid/cmdline" or return 1;    # cannot tell: trust pid file
    my $cmd = do { local $/; <$fh> } // '';
    close $fh;
    return $cmd =~ /nginx/;
}

# SIGQUIT, wait, then SIGKILL. Returns 1 if it exited gracefully.
sub _terminate {
    my ($pid, $timeout) = @_;
    return 1 unless _alive($pid);
    kill 'QUIT', $pid;
    my $deadline = time + $timeout;
    while (time < $deadline) {
        waitpid($pid, WNOHANG);
        return 1 unless _alive($pid);
        sleep 0.05;
    }
    kill 'KILL', $pid;
    for (1 .. 40) {
        waitpid($pid, WNOHANG);
        last unless _alive($pid);
        sleep 0.05;
    }
    return 0;
}

sub master_pid {
    my $self = shift;
    my $pid = _read_pid_file($self->pid_path);
    return undef unless $pid && _alive($pid);
    return $pid;
}

sub is_running { return defined $_[0]->master_pid }

# Children of the master as [pid, title] pairs, read from /proc. Under
# valgrind the process title is memcheck's command line (setproctitle only
# rewrites the guest's copy of argv), so titles are rebuilt from error.log
# ($errlog): a child that logged "gracefully shutting down" is a worker that
# is shutting down, any other child a worker.
sub _children {
    my ($ppid, $errlog) = @_;
    my @kids;
    opendir my $dh, '/proc' or return ();
    for my $pid (grep { /^\d+$/ } readdir $dh) {
        open my $fh, '<', "/proc/$pid/stat" or next;
        my $stat = <$fh> // '';
        close $fh;
        next unless $stat =~ /^\d+ \(.*\) (\S) (\d+) /s;
        next if $1 eq 'Z' || $2 != $ppid;
        my $title = '';
        if (open my $cf, '<', "/proc/$pid/cmdline") {
            $title = do { local $/; <$cf> } // '';
            close $cf;
            $title =~ s/\0+/ /g;
            $title =~ s/\s+$//;
        }
        push @kids, [$pid, $title];
    }
    closedir $dh;
    if (grep { $_->[1] !~ /^nginx: / } @kids) {
        my %quitting;
        if (defined $errlog && open my $fh, '<', $errlog) {
            while (my $line = <$fh>) {
                $quitting{$1} = 1 if $line =~ /\] (\d+)#\d+: gracefully shutting down/;
            }
            close $fh;
        }
        for my $k (grep { $_->[1] !~ /^nginx: / } @kids) {
            $k->[1] = $quitting{ $k->[0] } ? 'nginx: worker process is shutting down'
                                           : 'nginx: worker process';
        }
    }
    return sort { $a->[0] <=> $b->[0] } @kids;
}

# Worker pids of the current generation (not "shutting down").
sub worker_pids {
    my $self = shift;
    my $master = $self->master_pid or return ();
    return map { $_->[0] }
           grep { $_->[1] =~ /worker process/ && $_->[1] !~ /shutting down/ }
           _children($master, $self->error_log_path);
}

# Worker pids including old ones that are still shutting down.
sub all_worker_pids {
    my $self = shift;
    my $master = $self->master_pid or return ();
    return map { $_->[0] } grep { $_->[1] =~ /worker process/ }
           _children($master, $self->error_log_path);
}

sub _port_accepts {
    my $port = shift;
    my $sock = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1',
        PeerPort => $port,
        Proto    => 'tcp',
        Timeout  => 1,
    );
    return 0 unless $sock;
    close $sock;
    return 1;
}

sub _tail {
    my ($path, $n) = @_;
    open my $fh, '<', $path or return "(no $path)\n";
    my @lines = <$fh>;
    close $fh;
    splice @lines, 0, @lines - $n if @lines > $n;
    return join '', @lines;
}

sub _kill_leftover {
    my $self = shift;
    my $pid = _read_pid_file($self->pid_path);
    if ($pid && _alive($pid) && _is_nginx_process($pid)) {
        _terminate($pid, $STOP_TIMEOUT);
    }
    $self->_reap_valgrind_pids if $VALGRIND;
    unlink $self->pid_path;
}

# Fresh conf/ and logs/ (and temp dirs); html/ is kept (created if missing).
sub _prepare_servroot {
    my $self = shift;
    my $root = $self->{servroot};
    remove_tree($self->conf_dir, $self->log_dir, glob("$root/*_temp"));
    make_path($self->conf_dir, $self->log_dir, $self->html_dir);
    my $index = $self->html_dir . '/index.html';
    $self->write_file('index.html', "<html><body>It works!</body></html>\n")
        unless -e $index;
}

sub start {
    my $self = shift;

    $self->_kill_leftover;
    $self->_prepare_servroot;
    $self->write_conf;

    my $out = $self->{servroot} . '/nginx.out';
    my @cmd = ($self->valgrind_command,
               $self->{binary}, '-p', "$self->{servroot}/", '-c', 'conf/nginx.conf');
    my $status = _run_to_file(\@cmd, $out);

    my $fail = sub {
        my $why = shift;
        my $msg = "nginx failed to start ($why): @cmd\n";
        my $startup = _tail($out, 20);
        $msg .= "--- nginx output:\n$startup" if $startup =~ /\S/ && $startup !~ /^\(no /;
        $msg .= "--- tail of error.log:\n" . _tail($self->error_log_path, 20);
        $self->_kill_leftover;
        $self->_collect_valgrind if $VALGRIND;
        die $msg;
    };

    $fail->("exit status " . ($status >> 8)) if $status != 0;

    my $deadline = time + $START_TIMEOUT;
    while (1) {
        my $pid = $self->master_pid;
        last if $pid && _port_accepts($self->{port});
        $fail->("not listening on 127.0.0.1:$self->{port} after ${START_TIMEOUT}s")
            if time > $deadline;
        sleep 0.02;
    }
    return $self;
}

sub _run_to_file {
    my ($cmd, $file) = @_;
    my $pid = fork;
    croak "fork failed: $!" unless defined $pid;
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $file or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(126);
        { no warnings 'exec'; exec { $cmd->[0] } @$cmd; }
        POSIX::_exit(127);
    }
    waitpid($pid, 0);
    return $?;
}

# Graceful stop. Returns 1 if nginx quit within the timeout, 0 if it had to
# be killed (or was not running: returns 1).
sub stop {
    my $self = shift;
    my $pid = _read_pid_file($self->pid_path);
    my $ok = 1;
    if ($pid && _alive($pid)) {
        $ok = _terminate($pid, $STOP_TIMEOUT);
    }
    if ($VALGRIND) {
        $ok = 0 unless $self->_reap_valgrind_pids;
        $self->_collect_valgrind;
        $self->_keep_file($self->error_log_path, 'error.log');
    }
    unlink $self->pid_path;
    return $ok;
}

# ---------------------------------------------------------------------------
# valgrind (ORBIT_VALGRIND=1)
# ---------------------------------------------------------------------------

# The project root, for valgrind.suppress: $ORBIT_ROOT, else three levels
# above this file (t/lib/Orbit/Nginx.pm).
sub _project_root {
    return $ENV{ORBIT_ROOT} if $ENV{ORBIT_ROOT};
    my $here = File::Spec->rel2abs(__FILE__);
    $here =~ s{/t/lib/Orbit/Nginx\.pm$}{} or return '.';
    return $here;
}

sub valgrind_log_glob { return $_[0]->log_dir . '/valgrind.*.log' }

# The command prefix that runs nginx under memcheck; empty without
# ORBIT_VALGRIND. Every process of the tree (the daemonizing parent, the
# master, each worker) writes logs/valgrind.<pid>.log. Extra options:
# ORBIT_VALGRIND_OPTS (e.g. "--track-origins=yes --gen-suppressions=all").
sub valgrind_command {
    my $self = shift;
    return () unless $VALGRIND;
    my $supp = _project_root() . '/valgrind.suppress';
    return (
        $ENV{ORBIT_VALGRIND_BIN} || 'valgrind',
        '--tool=memcheck', '--trace-children=yes', '--child-silent-after-fork=no',
        '--num-callers=30',
        (-f $supp ? ("--suppressions=$supp") : ()),
        '--leak-check=full', '--show-leak-kinds=definite',
        # the modules are dlclose()d when the cycle pool goes at exit: keep
        # their symbols so leak stacks still name orbit_ frames
        '--keep-debuginfo=yes',
        '--log-file=' . $self->log_dir . '/valgrind.%p.log',
        grep { length } split /\s+/, $ENV{ORBIT_VALGRIND_OPTS} // '',
    );
}

# Wait for every process that has a valgrind log (workers orphaned by a
# killed master, a worker still writing its leak report) to exit; SIGKILL
# what is left after the stop timeout. Returns 1 if none had to be killed.
sub _reap_valgrind_pids {
    my $self = shift;
    my $logs = $self->log_dir . '/valgrind.';
    # only pids still running memcheck with our --log-file (pids get reused)
    my $ours = sub {
        my $pid = shift;
        return 0 unless _alive($pid);
        open my $fh, '<', "/proc/$pid/cmdline" or return 0;
        my $cmd = do { local $/; <$fh> } // '';
        close $fh;
        return index($cmd, "--log-file=$logs") >= 0;
    };
    my @pids = grep { $ours->($_) }
               map { m{/valgrind\.(\d+)\.log$} ? $1 : () } glob $self->valgrind_log_glob;
    return 1 unless @pids;
    my $deadline = time + $STOP_TIMEOUT;
    while (time < $deadline) {
        @pids = grep { $ours->($_) } @pids;
        return 1 unless @pids;
        sleep 0.1;
    }
    kill 'KILL', @pids;
    sleep 0.2;
    return 0;
}

# Scan the current logs/valgrind.*.log into $self (each log once), keeping
# a copy under $ORBIT_VALGRIND_KEEP if set (start() wipes logs/).
sub _collect_valgrind {
    my $self = shift;
    for my $log (sort glob $self->valgrind_log_glob) {
        my @st = stat $log or next;
        my $id = "$log:$st[1]:$st[9]:$st[7]";    # path, inode, mtime, size
        next if $self->{valgrind_seen}{$id}++;
        my $scan = scan_valgrind_log($log);
        # a log scanned while nginx ran is scanned again: keep reports once
        for my $kind (qw(errors leaks)) {
            push @{ $self->{"valgrind_$kind"} },
                grep { !$self->{valgrind_have}{$_}++ } @{ $scan->{$kind} };
        }
        (my $base = $log) =~ s{.*/}{};
        $self->_keep_file($log, $base) if ($st[7] // 0) > 0;
    }
    return;
}

# Copy $path to $ORBIT_VALGRIND_KEEP/<script>.<n>.<$name>, if that is set
# (n counts copies in this test process).
my $KeptFiles = 0;

sub _keep_file {
    my ($self, $path, $name) = @_;
    my $keep = $ENV{ORBIT_VALGRIND_KEEP} or return;
    make_path($keep) unless -d $keep;
    (my $script = $0) =~ s{.*/}{};
    my $dst = sprintf '%s/%s.%03d.%s', $keep, $script, ++$KeptFiles, $name;
    open my $in, '<', $path or return;
    binmode $in;
    if (open my $out, '>', $dst) {
        binmode $out;
        print {$out} $_ while <$in>;
        close $out;
    }
    close $in;
    return;
}

# Memory errors valgrind reported since this object was created: invalid
# reads/writes/frees, uninitialised values, mismatched frees, overlapping
# copies, plus "definitely lost" leaks with an orbit_ frame in their stack.
# Each is one report (text without the ==pid== prefixes, first line naming
# the log). Scans logs left since the last stop, too.
sub valgrind_errors {
    my $self = shift;
    return () unless $VALGRIND;
    $self->_collect_valgrind;
    return (@{ $self->{valgrind_errors} || [] },
            grep { has_orbit_frame($_) } @{ $self->{valgrind_leaks} || [] });
}

# True when a report's stack has a frame in orbit code (function, source
# file or the module's .so named orbit_*).
sub has_orbit_frame {
    return $_[0] =~ /^\s*(?:at|by) 0x[0-9A-Fa-f]+: .*orbit_/m ? 1 : 0;
}

# All "definitely lost" reports (nginx's own at-exit pools included): for diag.
sub valgrind_leaks {
    my $self = shift;
    return () unless $VALGRIND;
    $self->_collect_valgrind;
    return @{ $self->{valgrind_leaks} || [] };
}

# Text for a failing assertion's diag: the first report in full, then one
# line for each other distinct report (same stack from several processes
# counts once): its first line and its first orbit_ frame, if any.
sub valgrind_summary {
    my @reports = @_;
    return '' unless @reports;
    my (%seen, @distinct);
    for my $r (@reports) {
        # same stack and kind, whatever the process, sizes and addresses
        (my $key = $r) =~ s/^\S+: //;
        $key =~ s/0x[0-9A-Fa-f]+/0x/g;
        $key =~ s/^[\d,]+ (?:\([^)]*\) )?bytes in [\d,]+ blocks/N bytes/;
        $key =~ s/loss record [\d,]+ of [\d,]+//;
        push @distinct, $r unless $seen{$key}++;
    }
    my $text = scalar(@reports) . ' valgrind report(s), ' . scalar(@distinct)
             . " distinct; first:\n$distinct[0]";
    if (@distinct > 1) {
        $text .= "others:\n";
        for my $r (@distinct[1 .. $#distinct]) {
            my ($first) = $r =~ /^(.*)$/m;
            my ($frame) = $r =~ /^\s*(?:at|by) 0x[0-9A-Fa-f]+: (.*orbit_.*)$/m;
            $text .= "  $first" . (defined $frame ? "\n      at $frame" : '') . "\n";
        }
    }
    return $text;
}

my $VG_ERROR_RE = join '|', 'Invalid (?:read|write|free)', 'uninitialised',
    'Mismatched free', 'Source and destination overlap', 'unaddressable';
$VG_ERROR_RE = qr/$VG_ERROR_RE/;

# One memcheck log -> { errors => [...], leaks => [...] }: its records (split
# on the blank "==pid== " lines) whose first line is a memory error, or a
# "definitely lost" leak.
sub scan_valgrind_log {
    my $path = shift;
    my %out = (errors => [], leaks => []);
    open my $fh, '<', $path or return \%out;
    (my $name = $path) =~ s{.*/}{};
    my @rec;
    my $flush = sub {
        return unless @rec;
        my $first = $rec[0];
        my $text = "$name: " . join("\n", @rec) . "\n";
        if ($first =~ /are definitely lost in loss record/) {
            push @{ $out{leaks} }, $text;
        } elsif ($first =~ $VG_ERROR_RE) {
            push @{ $out{errors} }, $text;
        }
        @rec = ();
    };
    while (my $line = <$fh>) {
        chomp $line;
        next unless $line =~ s/^==\d+==\s?//;
        if ($line =~ /^\s*$/) {
            $flush->();
        } else {
            push @rec, $line;
        }
    }
    $flush->();
    close $fh;
    return \%out;
}

# Rewrite the config and SIGHUP the master, then wait (up to 10 s) until the
# new generation of workers is up and, unless wait_old => 0, until no worker
# is "shutting down" any more. Returns 1 once the new generation is up (even
# if old workers still drain after 10 s); 0 if nginx refused the config
# ([emerg] logged) or no new workers appeared. $self->reload_error says why.
sub reload {
    my ($self, %opts) = @_;
    my $wait_old = $opts{wait_old} // 1;
    croak "reload needs master_process on" unless $self->{master};
    my $master = $self->master_pid or croak "reload: nginx is not running";

    my %old = map { $_ => 1 } $self->all_worker_pids;
    my $offset = $self->error_log_size;
    $self->write_conf;
    delete $self->{reload_error};
    kill 'HUP', $master or croak "reload: cannot signal $master: $!";

    my $deadline = time + $START_TIMEOUT;
    my $up = 0;
    while (time < $deadline) {
        sleep 0.05;
        my $log = $self->error_log_since($offset);
        if ($log =~ /^(.*\[emerg\].*)$/m) {
            $self->{reload_error} = $1;
            return 0;
        }
        my @kids = grep { $_->[1] =~ /worker process/ }
                   _children($master, $self->error_log_path);
        my @current = grep { $_->[1] !~ /shutting down/ } @kids;
        my @new = grep { !$old{ $_->[0] } } @current;
        $up = @new >= $self->{workers} && @new == @current;
        next unless $up;
        return 1 unless $wait_old;
        return 1 unless grep { $old{ $_->[0] } } @kids;
    }
    return 1 if $up;
    $self->{reload_error} = "new worker generation not up after ${START_TIMEOUT}s";
    return 0;
}

sub reload_error { return $_[0]{reload_error} }

sub error_log_size {
    my $self = shift;
    my $size = -s $self->error_log_path;
    return $size // 0;
}

sub error_log_since {
    my ($self, $offset) = @_;
    open my $fh, '<', $self->error_log_path or return '';
    binmode $fh;
    seek $fh, $offset // 0, 0;
    my $text = do { local $/; <$fh> } // '';
    close $fh;
    return $text;
}

sub error_log { return $_[0]->error_log_since(0) }

# ---------------------------------------------------------------------------
# HTTP client (exported functions)
# ---------------------------------------------------------------------------

sub _default_port { return $ENV{TEST_NGINX_SERVER_PORT} || 1984 }

# Build an HTTP/1.1 request. headers: hashref (value may be an arrayref for
# repeated headers) or arrayref of [name, value] pairs, sent in order.
sub build_request {
    my ($method, $path, $body, %opts) = @_;
    my $headers = $opts{headers} // {};
    my @pairs = ref $headers eq 'ARRAY'
        ? @$headers
        : map {
              my $k = $_;
              ref $headers->{$k} eq 'ARRAY'
                  ? map { [$k, $_] } @{ $headers->{$k} }
                  : [$k, $headers->{$k}]
          } sort keys %$headers;
    my %have = map { lc $_->[0] => 1 } @pairs;

    my $req = "$method $path HTTP/1.1\r\n";
    $req .= "Host: localhost\r\n" unless $have{host};
    $req .= "Connection: close\r\n" unless $have{connection};
    $req .= "$_->[0]: $_->[1]\r\n" for @pairs;
    if (defined $body && !$have{'content-length'} && !$have{'transfer-encoding'}) {
        $req .= 'Content-Length: ' . length($body) . "\r\n";
    }
    $req .= "\r\n";
    $req .= $body if defined $body;
    return $req;
}

# The client functions also work as methods: $t->http_get('/x') uses the
# port of $t unless a port option is given.
sub _invocant_port {
    my $args = shift;
    if (@$args && ref $args->[0] && eval { $args->[0]->isa(__PACKAGE__) }) {
        return shift(@$args)->{port};
    }
    return undef;
}

sub http {
    my $port = _invocant_port(\@_);
    my ($method, $path, $body, %opts) = @_;
    $port = delete $opts{port} // $port // _default_port();
    my $timeout = delete $opts{timeout};
    my $req = build_request($method, $path, $body, %opts);
    return http_request($port, $req, (defined $timeout ? (timeout => $timeout) : ()));
}

sub http_get {
    my $port = _invocant_port(\@_);
    my ($path, %opts) = @_;
    $opts{port} //= $port if defined $port;
    return http('GET', $path, undef, %opts);
}

# http_request($port, $raw, %opts), or $t->http_request($raw, %opts)
sub http_request {
    my $self_port = _invocant_port(\@_);
    unshift @_, $self_port if defined $self_port;
    my ($port, $raw, %opts) = @_;
    my ($res) = _exchange([$raw], port => $port, %opts);
    return $res;
}

sub parallel_requests {
    my $port = _invocant_port(\@_);
    my ($reqs, %opts) = @_;
    $opts{port} //= $port // _default_port();
    my @results = _exchange($reqs, %opts);
    return wantarray ? @results : \@results;
}

# Try to parse a complete response out of $buf. Returns a result hashref when
# complete (or when $eof and something usable is there), else undef.
sub parse_response {
    my ($buf, $is_head, $eof) = @_;

    my $pos = 0;
    my ($status_line, $header_text);
    while (1) {
        my $end = index($buf, "\r\n\r\n", $pos);
        my $sep = 4;
        my $lf = index($buf, "\n\n", $pos);
        if ($lf >= 0 && ($end < 0 || $lf < $end)) {
            ($end, $sep) = ($lf, 2);
        }
        if ($end < 0) {
            return undef unless $eof;
            return { raw => $buf, incomplete => 1, status => undef,
                     headers => {}, raw_headers => [], body => '' };
        }
        my $head = substr($buf, $pos, $end - $pos);
        my $next = $end + $sep;
        ($status_line, $header_text) = split /\r?\n/, $head, 2;
        $status_line //= '';
        # skip interim 1xx responses (except 101 Switching Protocols)
        if ($status_line =~ m{^HTTP/\d\.\d\s+1(?!01)\d\d\b}) {
            $pos = $next;
            next;
        }
        $pos = $next;
        last;
    }

    my %res = (raw => $buf, headers => {}, raw_headers => [], body => '');
    if ($status_line =~ m{^(HTTP/\d\.\d)\s+(\d{3})(?:\s+(.*))?$}) {
        @res{qw(http_version status reason)} = ($1, $2 + 0, $3 // '');
    } else {
        $res{status} = undef;
        $res{bad_status_line} = $status_line;
    }
    for my $line (split /\r?\n/, $header_text // '') {
        next unless $line =~ /^([^:\s]+)\s*:\s*(.*?)\s*$/;
        push @{ $res{raw_headers} }, [$1, $2];
        $res{headers}{ lc $1 } = $2;
    }
    $res{raw_head} = substr($buf, 0, $pos);

    my $rest = substr($buf, $pos);
    my $status = $res{status} // 0;
    my $te = $res{headers}{'transfer-encoding'} // '';
    my $cl = $res{headers}{'content-length'};

    if ($is_head || $status == 204 || $status == 304 || $status == 101) {
        $res{left} = $rest if length $rest;
        return \%res;
    }

    if ($te =~ /\bchunked\b/i) {
        my $body = '';
        my $p = 0;
        while (1) {
            my $eol = index($rest, "\r\n", $p);
            if ($eol < 0) {
                return undef unless $eof;
                @res{qw(body incomplete)} = ($body, 1);
                return \%res;
            }
            my $size_line = substr($rest, $p, $eol - $p);
            if ($size_line !~ /^\s*([0-9a-fA-F]+)/) {
                @res{qw(body incomplete bad_chunk)} = ($body, 1, $size_line);
                return \%res;
            }
            my $size = hex $1;
            $p = $eol + 2;
            if ($size == 0) {
                # trailers until an empty line
                my $end = index($rest, "\r\n", $p);
                while ($end >= 0 && $end != $p) {
                    $p = $end + 2;
                    $end = index($rest, "\r\n", $p);
                }
                if ($end < 0) {
                    return undef unless $eof;
                    @res{qw(body incomplete)} = ($body, 1);
                    return \%res;
                }
                $p = $end + 2;
                $res{body} = $body;
                $res{left} = substr($rest, $p) if $p < length $rest;
                return \%res;
            }
            if (length($rest) < $p + $size + 2) {
                return undef unless $eof;
                $body .= substr($rest, $p) if $p < length $rest;
                @res{qw(body incomplete)} = ($body, 1);
                return \%res;
            }
            $body .= substr($rest, $p, $size);
            $p += $size + 2;
        }
    }

    if (defined $cl && $cl =~ /^\d+$/) {
        if (length $rest < $cl) {
            return undef unless $eof;
            @res{qw(body incomplete)} = ($rest, 1);
            return \%res;
        }
        $res{body} = substr($rest, 0, $cl);
        $res{left} = substr($rest, $cl) if length $rest > $cl;
        return \%res;
    }

    # no framing: read until the server closes
    return undef unless $eof;
    $res{body} = $rest;
    return \%res;
}

# Drive several raw exchanges at once. Each request: a string, or an
# arrayref of packets (strings, or {value => ..., delay_before => s}).
# Options: port, host, timeout (s, whole batch, default 10).
sub _exchange {
    my ($reqs, %opts) = @_;
    my $port = $opts{port} // _default_port();
    my $host = $opts{host} // '127.0.0.1';
    my $timeout = ($opts{timeout} // 10) * $REQUEST_FACTOR;

    local $SIG{PIPE} = 'IGNORE';
    my $t0 = time;
    my $deadline = $t0 + $timeout;
    my @conns;

    for my $i (0 .. $#$reqs) {
        my $req = $reqs->[$i];
        my @packets = map { ref $_ ? $_ : { value => $_ } } (ref $req ? @$req : ($req));
        my $first = join '', map { $_->{value} // '' } @packets;
        my $c = {
            idx     => $i,
            packets => \@packets,
            out     => '',
            in      => '',
            head    => ($first =~ /^\s*HEAD\s/ ? 1 : 0),
            next_at => 0,
        };
        push @conns, $c;
        my $sock = IO::Socket::INET->new(
            PeerAddr => $host,
            PeerPort => $port,
            Proto    => 'tcp',
            Timeout  => $timeout,
        );
        if (!$sock) {
            $c->{result} = { error => "cannot connect to $host:$port: $!",
                             status => undef, headers => {}, raw_headers => [],
                             body => '', raw => '' };
            $c->{result}{elapsed} = time - $t0;
            next;
        }
        $sock->blocking(0);
        binmode $sock;
        $c->{sock} = $sock;
        _next_packet($c, $t0);
    }

    my $finish = sub {
        my ($c, $res, %extra) = @_;
        $res->{$_} = $extra{$_} for keys %extra;
        $res->{elapsed} = time - $t0;
        $c->{result} = $res;
        close $c->{sock} if $c->{sock};
        delete $c->{sock};
    };

    while (my @live = grep { $_->{sock} } @conns) {
        my $now = time;
        if ($now >= $deadline) {
            for my $c (@live) {
                my $res = parse_response($c->{in}, $c->{head}, 1);
                $finish->($c, $res, timed_out => 1,
                          error => "timed out after ${timeout}s");
            }
            last;
        }
        my $rsel = IO::Select->new;
        my $wsel = IO::Select->new;
        my $wait = $deadline - $now;
        for my $c (@live) {
            $rsel->add($c->{sock});
            if (length $c->{out}) {
                $wsel->add($c->{sock});
            } elsif (@{ $c->{packets} }) {
                my $dt = $c->{next_at} - $now;
                if ($dt <= 0) {
                    _next_packet($c, $now);
                    $wsel->add($c->{sock}) if length $c->{out};
                    $wait = 0;
                } elsif ($dt < $wait) {
                    $wait = $dt;
                }
            }
        }
        $wait = 0.5 if $wait > 0.5;
        my ($r, $w) = IO::Select->select($rsel, $wsel, undef, $wait);

        for my $sock (@{ $w || [] }) {
            my ($c) = grep { $_->{sock} && $_->{sock} == $sock } @conns;
            next unless $c && length $c->{out};
            my $n = syswrite($sock, $c->{out});
            if (defined $n) {
                substr($c->{out}, 0, $n, '');
            } elsif ($! != EAGAIN && $! != EWOULDBLOCK && $! != EINTR) {
                # peer closed early (e.g. 413): stop sending, keep reading
                $c->{out} = '';
                $c->{packets} = [];
                $c->{write_error} = "$!";
            }
        }

        for my $sock (@{ $r || [] }) {
            my ($c) = grep { $_->{sock} && $_->{sock} == $sock } @conns;
            next unless $c;
            my $n = sysread($sock, my $chunk, 65536);
            if (!defined $n) {
                next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
                my $err = "$!";
                my $res = parse_response($c->{in}, $c->{head}, 1);
                $finish->($c, $res, (length $c->{in} ? () : (error => "read: $err")));
                next;
            }
            if ($n == 0) {
                my $res = parse_response($c->{in}, $c->{head}, 1);
                $finish->($c, $res, (length $c->{in} ? () : (error => 'connection closed')));
                next;
            }
            $c->{in} .= $chunk;
            my $res = parse_response($c->{in}, $c->{head}, 0);
            $finish->($c, $res) if $res;
        }
    }

    for my $c (@conns) {
        $c->{result}{write_error} = $c->{write_error} if $c->{write_error};
    }
    return map { $_->{result} } @conns;
}

sub _next_packet {
    my ($c, $now) = @_;
    while (@{ $c->{packets} }) {
        my $p = $c->{packets}[0];
        if ($p->{delay_before} && !$p->{_delayed}) {
            $p->{_delayed} = 1;
            $c->{next_at} = $now + $p->{delay_before};
            return;
        }
        shift @{ $c->{packets} };
        $c->{out} .= $p->{value} // '';
        return if @{ $c->{packets} } && $c->{packets}[0]{delay_before};
    }
}

1;

__END__

=head1 NAME

Orbit::Nginx - start, stop, reload and query a test nginx (procedural layer)

=head1 SYNOPSIS

    use lib 't/lib';
    use Test::More;
    use Orbit::Nginx;

    my $t = Orbit::Nginx->new(
        workers => 2,
        config  => 'location /t { return 200 "ok\n"; }',
    );
    $t->start;

    my $r = http_get('/t', port => $t->port);
    is $r->{status}, 200;

    $t->config('location /t { return 200 "v2\n"; }');
    ok $t->reload, 'reloaded' or diag $t->reload_error;

    my @res = $t->parallel_requests(
        [ map { Orbit::Nginx::build_request('GET', '/t') } 1 .. 100 ], timeout => 5);
    $t->stop;
    unlike $t->error_log, qr/\[(?:alert|emerg|crit)\]/;

=head1 CONSTRUCTOR

C<< Orbit::Nginx->new(%opts) >>: servroot (t/servroot), port
(C<$ENV{TEST_NGINX_SERVER_PORT}> or 1984), workers (1), master (1),
main_config, http_config, config (server block body), log_level (info),
load_modules (arrayref or whitespace list; default C<$ENV{TEST_NGINX_LOAD_MODULES}>),
worker_connections (1024), env (arrayref of names for C<env> directives),
user, binary (C<$ENV{TEST_NGINX_BINARY}>, else nginx in PATH, else /usr/sbin/nginx).
Every option has a same-named accessor/setter.

C<$TEST_NGINX_FOO> and C<${TEST_NGINX_FOO}> in the three config parts are
replaced from C<%ENV>; TEST_NGINX_SERVER_PORT, TEST_NGINX_SERVROOT,
TEST_NGINX_SERVER_ROOT and TEST_NGINX_HTML_DIR always reflect this instance.
An unknown name is fatal.

=head1 METHODS

conf_text, write_conf, write_file($name, $content), start, stop, reload,
reload_error, master_pid, is_running, worker_pids, all_worker_pids,
error_log_path, error_log_size, error_log_since($offset), error_log,
html_dir, conf_path, pid_path, access_log_path, valgrind_errors,
valgrind_leaks, plus http_get, http, http_request, parallel_requests bound
to this instance's port.

C<start> kills an nginx left on the pid file, recreates conf/ and logs/
(html/ is kept), writes the config and waits up to 10 s for the port; it
dies with nginx's output and the tail of error.log on failure. C<stop> sends
SIGQUIT, waits up to 10 s, then SIGKILL; it returns false if it had to kill.
C<reload(wait_old =E<gt> 1)> rewrites the config, sends SIGHUP and waits until
the new workers are up and (unless wait_old is 0) no worker is "shutting
down", up to 10 s; it returns false when nginx refused the new config
([emerg]) or no new worker appeared. worker_pids excludes workers that are
shutting down; all_worker_pids includes them.

=head1 VALGRIND

With C<ORBIT_VALGRIND=1> in the environment, C<start> runs nginx as
C<valgrind --tool=memcheck --trace-children=yes --child-silent-after-fork=no
--num-callers=30 --suppressions=ROOT/valgrind.suppress --leak-check=full
--show-leak-kinds=definite --keep-debuginfo=yes
--log-file=SERVROOT/logs/valgrind.%p.log nginx ...> (daemon and master as
configured; every process writes its own log). ROOT is C<$ORBIT_ROOT> or the
checkout holding this file; C<ORBIT_VALGRIND_BIN> replaces C<valgrind>,
C<ORBIT_VALGRIND_OPTS> adds options (e.g. C<--track-origins=yes>),
C<ORBIT_VALGRIND_KEEP=DIR> keeps a copy of every valgrind log and, at each
C<stop>, of error.log (C<start> wipes logs/).
Start, stop and reload waits are multiplied by C<ORBIT_VALGRIND_SLOWDOWN>
(10) and every client timeout by C<ORBIT_VALGRIND_REQUEST_FACTOR> (5).
Process titles are memcheck's command line under valgrind, so worker_pids
and reload tell workers that are shutting down by their "gracefully
shutting down" line in error.log.

C<stop> waits for every process with a log, then scans the logs.
C<valgrind_errors> returns the reports (text, ==pid== prefixes removed,
first line naming the log) of memory errors (Invalid read/write/free,
uninitialised values, Mismatched free, Source and destination overlap,
unaddressable bytes) plus the "definitely lost" leaks whose stack has an
C<orbit_> frame; C<valgrind_leaks> returns every "definitely lost" report.
C<Orbit::Nginx::valgrind_summary(@reports)> formats them for a diag. All
return nothing without ORBIT_VALGRIND.

=head1 FUNCTIONS (exported)

C<http_request($port, $raw, timeout =E<gt> $s)>, C<http_get($path, %opts)>,
C<http($method, $path, $body, %opts)> with headers/port/timeout options,
C<parallel_requests(\@raw, port =E<gt> $p, timeout =E<gt> $s)> (list of results
in list context, arrayref in scalar context; C<elapsed> counts from the
start of the batch). Each function also works as a method on an instance,
using its port. Not exported by default: C<build_request($method, $path,
$body, headers =E<gt> ...)>, C<parse_response>, C<expand_env>.
A raw request may also be an arrayref of packets (strings, or
C<{value =E<gt> ..., delay_before =E<gt> $s}>).
A result is a hashref: status, reason, http_version, headers (lowercased,
last wins), raw_headers ([name, value] in order), body, raw, elapsed, and on
trouble error / timed_out / incomplete.

=cut
