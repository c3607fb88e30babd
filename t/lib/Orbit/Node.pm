package Orbit::Node;

=head1 NAME

Orbit::Node - run the suites' Node scripts (t/node/*.js) and read their JSON

=head1 SYNOPSIS

    use Orbit::Node;

    # to the end: every stdout line that is a JSON object, decoded
    my $r = node_run('sio-client.js', args => [$port, '/chat'],
                     env => { TOKEN => $jwt }, timeout => 20);
    is($r->{exit}, 0);
    is($r->{events}[0]{event}, 'connected') or diag($r->{stderr});

    # in the background, read as it goes
    my $h = node_start('sio-listen.js', args => [$port]);
    ok($h->wait_for('subscribed', 5), 'the client is in its room');
    api($t, 'POST', '/api/v1/messages', ...);          # what it waits for
    my $ev = $h->wait_for(sub { $_[0]{event} eq 'message:new' }, 5);
    ok($ev, 'pushed to the client');
    $h->stop;

    # a server script: listens on a free port below 32768
    my $srv = node_server('ws-echo-server.js');
    my $ws = Orbit::WS->connect($srv->port, '/echo');

=head1 DESCRIPTION

Scripts are named relative to t/node (an absolute path is taken as it is)
and run with C<node> (or C<$ORBIT_NODE>); their packages come from
t/node/node_modules, which C<./tools/orbit setup> installs (a missing
node_modules is an error saying so).  Each script runs in a process group
of its own, with a hard timeout: an alarm set before exec (SIGALRM ends node)
and, while Perl waits for it, a kill of the group.  Whatever is still
running when the test script ends is stopped (an END block of this module,
in the process that started it).  Scripts meant to run in the background
should also exit when their standard input closes (C<process.stdin.on('end',
...)>): that way they end even when the test is killed.

A script's protocol is its standard output: one JSON object per line (other
lines are kept apart, in C<other>).  Its standard error is kept too.

=head2 node_run($script, %opts)

Runs the script to its end.  Options: C<args> (arrayref), C<env> (hashref
added to the environment; undef removes a variable), C<timeout> (seconds,
default 30), C<stdin> (text given as its standard input; none: empty).
Returns

    { events => [ {...}, ... ],   # the JSON objects, in order
      exit   => 0,                # exit code; undef when ended by a signal
      signal => 0,                # the signal that ended it
      timed_out => 0,             # killed at the timeout
      stderr => '...', other => [ 'non-JSON stdout lines' ],
      seconds => 0.42 }

=head2 node_start($script, %opts) -> handle

Starts the script in the background (same options; C<timeout> defaults to
120 and C<stdin> is a pipe, see C<write_json>).  Handle methods:

=over

=item wait_for($match, $timeout)

The first JSON object not yet returned by an earlier wait_for that matches:
$match is a code ref called with the object (also in $_), or a string, the
value of its C<event>.  Objects that came before the call count, so an
event that arrived early is not missed.  Waits up to $timeout seconds
(default 5); undef when none came, or when the script ended first.

=item events

All objects so far (arrayref), matched or not.  C<other>: the non-JSON
lines.  C<stderr>: its standard error so far.

=item write_json($object), write_line($text)

A line to the script's standard input.

=item close_stdin

Closes the script's standard input (a script that reads it sees its end).

=item wait_exit($timeout)

Waits for the script to end by itself; its status (as stop) or undef.

=item stop($grace)

Closes its standard input, sends SIGTERM to its group, SIGKILL after $grace
seconds (default 2), reaps it and reads what it still wrote.  Returns
C<{ exit, signal, timed_out, stderr, events, other }>.  A second stop
returns the same.

=item pid, alive, port (node_server's)

=back

=head2 node_server($script, %opts) -> handle

node_start for a server script that listens on C<$ENV{PORT}> (127.0.0.1)
and says so with C<{"event":"listening","port":N}>, or
C<{"event":"error","code":"EADDRINUSE"}> and exits.  Tries free ports
(see free_port, from C<$opts{from}>) until one works; dies when the script
does not start.  C<< $handle->port >> is its port.

=head2 free_port($from)

The first port at or above $from (default TEST_NGINX_SERVER_PORT + 1000,
or 22984) that 127.0.0.1 can listen on now, below 32768.

=head2 node_dir

The absolute path of t/node.

=cut

use strict;
use warnings;

use Carp qw(croak);
use Errno qw(EAGAIN EINTR EWOULDBLOCK);
use Exporter qw(import);
use File::Basename qw(dirname);
use File::Spec ();
use File::Temp ();
use IO::Handle ();
use IO::Select ();
use IO::Socket::INET ();
use JSON::PP ();
use POSIX ();
use Scalar::Util qw(weaken);
use Time::HiRes qw(time sleep);

our @EXPORT = qw(node_run node_start node_server free_port node_dir);

my $NODE_DIR = File::Spec->catdir(
    dirname(dirname(dirname(File::Spec->rel2abs(__FILE__)))), 'node');
my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;
our %LIVE;    # pid -> handle (weak): what to stop at the end

sub node_dir { return $NODE_DIR }

sub free_port {
    my ($port) = @_;
    $port //= ($ENV{TEST_NGINX_SERVER_PORT} || 21984) + 1000;
    for (; $port < 32768; $port++) {
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                      LocalPort => $port, Proto => 'tcp',
                                      Listen => 1, ReuseAddr => 1)
            or next;
        CORE::close($s);
        return $port;
    }
    croak 'no free port below 32768';
}


sub node_run {
    my ($script, %o) = @_;
    my $h = _spawn($script, timeout => 30, %o, stdin_pipe => 0);
    my $deadline = $h->{started} + $h->{timeout};
    1 while !$h->{stdout_eof} && $h->_pump($deadline);
    # its stdout closes a moment before it exits: wait for that, not kill
    sleep 0.01 until $h->_reap(0) || time >= $deadline;
    my $status = $h->_finish(time < $deadline ? 2 : 0);
    $status->{timed_out} ||= time >= $deadline && !$h->{exited_by_itself};
    $status->{seconds} = time - $h->{started};
    return $status;
}

sub node_start {
    my ($script, %o) = @_;
    return _spawn($script, timeout => 120, %o, stdin_pipe => 1);
}

sub node_server {
    my ($script, %o) = @_;
    my $port = free_port(delete $o{from});
    my $wait = delete $o{start_timeout} // 10;
    for my $try (1 .. 20) {
        my $h = node_start($script, %o,
                           env => { %{ $o{env} // {} }, PORT => $port });
        my $ev = $h->wait_for(sub {
            ($_[0]{event} // '') =~ /^(?:listening|error)\z/ }, $wait);
        if ($ev && $ev->{event} eq 'listening') {
            $h->{port} = $ev->{port} // $port;
            return $h;
        }
        my $st = $h->stop(1);
        if (!$ev || ($ev->{code} // '') ne 'EADDRINUSE') {
            croak "$script did not start: "
                . ($ev ? $JSON->encode($ev) : 'no "listening" line')
                . "\n$st->{stderr}";
        }
        $port = free_port($port + 1);
    }
    croak "$script: no port it could listen on";
}


sub _spawn {
    my ($script, %o) = @_;
    my $path = File::Spec->file_name_is_absolute($script)
             ? $script : "$NODE_DIR/$script";
    croak "no script $path" unless -f $path;
    croak "no $NODE_DIR/node_modules: run ./tools/orbit setup"
        unless -d "$NODE_DIR/node_modules";
    my $node = $ENV{ORBIT_NODE} // 'node';
    my @args = @{ $o{args} // [] };
    my %env = %{ $o{env} // {} };
    my $timeout = $o{timeout};

    my $err = File::Temp->new(TEMPLATE => 'orbit-node-XXXXXX', TMPDIR => 1);
    my $in;
    if (!$o{stdin_pipe}) {
        $in = File::Temp->new(TEMPLATE => 'orbit-node-XXXXXX', TMPDIR => 1);
        print {$in} $o{stdin} // '';
        CORE::close($in);
    }
    pipe(my $out_r, my $out_w) or croak "pipe: $!";
    my ($in_r, $in_w);
    if ($o{stdin_pipe}) { pipe($in_r, $in_w) or croak "pipe: $!" }

    my $pid = fork;
    croak "fork: $!" unless defined $pid;
    if ($pid == 0) {
        eval {
            POSIX::setpgid(0, 0);
            CORE::close($out_r);
            CORE::close($in_w) if $in_w;
            if ($in_r) {
                open STDIN, '<&', $in_r or die "stdin: $!";
            } else {
                open STDIN, '<', $in->filename or die "stdin: $!";
            }
            open STDOUT, '>&', $out_w or die "stdout: $!";
            open STDERR, '>>', $err->filename or die "stderr: $!";
            for (keys %env) {
                if (defined $env{$_}) { $ENV{$_} = $env{$_} }
                else                  { delete $ENV{$_} }
            }
            # an alarm outlives exec: its SIGALRM ends node
            alarm(POSIX::ceil($timeout)) if $timeout;
            exec { $node } $node, $path, @args or die "exec $node: $!";
        };
        print STDERR $@;
        POSIX::_exit(127);
    }
    CORE::close($out_w);
    CORE::close($in_r) if $in_r;
    if ($in_w) {
        $in_w->autoflush(1);
    }

    my $h = bless {
        pid => $pid, owner => $$, script => $script, out => $out_r,
        in => $in_w, err => $err, stdin_file => $in, buf => '',
        events => [], taken => {}, other => [], started => time,
        timeout => $timeout || 1e9, stdout_eof => 0, status => undef,
    }, 'Orbit::Node::Handle';
    $LIVE{$pid} = $h;
    weaken($LIVE{$pid});
    return $h;
}

END {
    local $?;    # the stops' waitpid would change the test's exit status
    for my $h (grep { defined } values %LIVE) {
        $h->stop(1) if $h->{owner} == $$;
    }
}


package Orbit::Node::Handle;

use strict;
use warnings;

use Errno qw(EAGAIN EINTR EWOULDBLOCK);
use IO::Select ();
use POSIX ();
use Time::HiRes qw(time sleep);

sub pid    { return $_[0]{pid} }
sub port   { return $_[0]{port} }
sub events { return [ @{ $_[0]{events} } ] }
sub other  { return [ @{ $_[0]{other} } ] }

sub stderr {
    my ($self) = @_;
    open my $fh, '<', $self->{err}->filename or return '';
    local $/;
    my $s = <$fh>;
    return $s // '';
}

sub alive {
    my ($self) = @_;
    return 0 if $self->{status};
    return $self->_reap(0) ? 0 : 1;
}

# reaps the process if it has ended (blocking when $block); true if it has
sub _reap {
    my ($self, $block) = @_;
    return 1 if defined $self->{wait_status};
    my $r = waitpid $self->{pid}, $block ? 0 : POSIX::WNOHANG();
    return 0 if $r == 0;
    $self->{wait_status} = $r == $self->{pid} ? $? : -1;
    return 1;
}

# Reads stdout until $deadline or a line came in; 1 when lines came.
sub _pump {
    my ($self, $deadline) = @_;
    return 0 if $self->{stdout_eof};
    my $sel = IO::Select->new($self->{out});
    while (1) {
        my $left = $deadline - time;
        $left = 0 if $left < 0;
        $! = 0;
        if (!$sel->can_read($left)) {
            next if $!{EINTR} && $left > 0;
            return 0;
        }
        my $n = sysread $self->{out}, my $chunk, 65536;
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            $n = 0;
        }
        if ($n == 0) {
            $self->{stdout_eof} = 1;
            $self->_line($self->{buf}) if length $self->{buf};
            $self->{buf} = '';
            return 0;
        }
        $self->{buf} .= $chunk;
        my $got = 0;
        while ($self->{buf} =~ s/\A([^\n]*)\n//) {
            $self->_line($1);
            $got = 1;
        }
        return 1 if $got;
    }
}

sub _line {
    my ($self, $line) = @_;
    $line =~ s/\r\z//;
    my $obj = $line =~ /\A\s*\{/ ? eval { $JSON->decode($line) } : undef;
    if (ref $obj eq 'HASH') {
        push @{ $self->{events} }, $obj;
    } else {
        push @{ $self->{other} }, $line;
    }
}

sub wait_for {
    my ($self, $match, $timeout) = @_;
    my $test = ref $match eq 'CODE' ? $match
             : sub { defined $_[0]{event} && $_[0]{event} eq $match };
    my $deadline = time + ($timeout // 5);
    my $i = 0;
    while (1) {
        for (; $i < @{ $self->{events} }; $i++) {
            next if $self->{taken}{$i};
            my $ev = $self->{events}[$i];
            local $_ = $ev;
            next unless $test->($ev);
            $self->{taken}{$i} = 1;
            return $ev;
        }
        return undef if $self->{stdout_eof} || time >= $deadline;
        $self->_pump($deadline);
    }
}

sub write_line {
    my ($self, $line) = @_;
    return 0 unless $self->{in};
    local $SIG{PIPE} = 'IGNORE';
    my $ok = print { $self->{in} } "$line\n";
    return $ok ? 1 : 0;
}

sub write_json {
    my ($self, $obj) = @_;
    return $self->write_line($JSON->encode($obj));
}

sub close_stdin {
    my ($self) = @_;
    CORE::close(delete $self->{in}) if $self->{in};
    return 1;
}

sub wait_exit {
    my ($self, $timeout) = @_;
    my $deadline = time + ($timeout // 5);
    1 while !$self->{stdout_eof} && $self->_pump($deadline);
    while (time < $deadline) {
        return $self->_finish(0) if $self->_reap(0);
        sleep 0.02;
    }
    return $self->_reap(0) ? $self->_finish(0) : undef;
}

sub stop {
    my ($self, $grace) = @_;
    return $self->_finish($grace // 2);
}

# Ends the process (SIGTERM to its group, SIGKILL after $grace), reaps it,
# reads the rest of its output; the status hash.
sub _finish {
    my ($self, $grace) = @_;
    return $self->{status} if $self->{status};
    $self->close_stdin;
    my $pid = $self->{pid};
    if (!$self->_reap(0)) {
        kill 'TERM', -$pid;
        my $deadline = time + $grace;
        until ($self->_reap(0)) {
            if (time >= $deadline) {
                kill 'KILL', -$pid;
                $self->_reap(1);
                last;
            }
            if ($self->{stdout_eof}) { sleep 0.02 }
            else { $self->_pump(time + 0.02) }    # it may write as it goes
        }
    } else {
        $self->{exited_by_itself} = 1;
    }
    1 while !$self->{stdout_eof} && $self->_pump(time + 0.2);
    CORE::close($self->{out});
    delete $Orbit::Node::LIVE{$pid};

    my $ws = $self->{wait_status};
    my $sig = $ws == -1 ? 0 : $ws & 127;
    return $self->{status} = {
        exit => $sig || $ws == -1 ? undef : $ws >> 8,
        signal => $sig,
        timed_out => $sig == 14 ? 1 : 0,    # SIGALRM: its hard timeout
        stderr => $self->stderr,
        events => $self->events,
        other => $self->other,
    };
}

sub DESTROY {
    my ($self) = @_;
    return if ${^GLOBAL_PHASE} eq 'DESTRUCT' || $self->{status};
    $self->_finish(1) if $self->{owner} == $$;
}

1;
