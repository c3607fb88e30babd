package Orbit::Mail;

=head1 NAME

Orbit::Mail - real mail servers for the Email channel's suites: Dovecot
(IMAP) and aiosmtpd (SMTP), from Debian's packages

=head1 SYNOPSIS

    use Orbit::Mail;

    my $imap = Orbit::Mail->imap(user => 'desk@acme.test', password => 'pw');
    # config imapUrl => $imap->url ("imap://127.0.0.1:PORT/INBOX")
    $imap->append($raw_rfc5322);            # IMAP APPEND, as a client would
    my $uidvalidity = $imap->uidvalidity;

    my $smtp = Orbit::Mail->smtp(auth => 'desk@acme.test:pw');
    # config smtpUrl => $smtp->url ("smtp://127.0.0.1:PORT")
    my @mails = $smtp->wait_mails(1, 10);   # [{ from, to, raw, ... }]
    $smtp->force('554 5.7.1 Rejected');     # DATA answered with it
    $smtp->force(undef);
    $smtp->stop; $smtp->start;              # down, and up again

=head1 DESCRIPTION

Both servers run in the foreground as children of the test, under a
folder of their own in the test's servroot (C<t/servroot-mail/NAME-PID>),
on free loopback ports below 32768, and are stopped when the object goes
or the test ends.

IMAP: C<dovecot -F> with a minimal configuration written there: one user
in a passwd-file (plain password), mail in a Maildir under the folder
(owned by C<nobody>, the mail user), plaintext login without SSL, only
the imap listener.  The master runs as root (as the suites do); its
login and mail processes drop to C<dovenull> and C<nobody>.

SMTP: C<t/mail/smtpd.py> (python3-aiosmtpd), which writes each accepted
mail to its spool folder; C<auth> makes it offer and require AUTH
PLAIN/LOGIN without TLS.  C<force> writes the spool's C<force-data> file.

=cut

use strict;
use warnings;

use File::Path qw(make_path remove_tree);
use File::Spec ();
use IO::Socket::INET ();
use JSON::PP ();
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

my $ROOT = $ENV{ORBIT_ROOT} // File::Spec->rel2abs('.');
my @LIVE;
my $seq = 0;


sub _folder {
    my ($name) = @_;
    my $dir = "$ROOT/t/servroot-mail/$name-$$-" . ++$seq;
    remove_tree($dir);
    make_path($dir);
    chmod 0755, "$ROOT/t/servroot-mail", $dir;
    return $dir;
}


# a free loopback port below 32768
sub _port {
    my $p = 24100 + ($$ * 7 + $seq * 13) % 800;
    for (1 .. 800) {
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                      LocalPort => $p, Proto => 'tcp',
                                      ReuseAddr => 1, Listen => 1);
        if ($s) { close $s; return $p }
        $p = $p >= 24899 ? 24100 : $p + 1;
    }
    die "no free port for a mail server";
}


sub _spawn {
    my ($self) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$self->{dir}/server.out";
        open STDERR, '>&', \*STDOUT;
        exec @{ $self->{cmd} } or POSIX::_exit(127);
    }
    $self->{pid} = $pid;

    # up once it accepts connections
    my $t0 = time;
    while (time - $t0 < 15) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $self->{port},
                                      Timeout => 1);
        return $self if $s;
        die "$self->{cmd}[0] exited:\n" . $self->server_log
            if waitpid($pid, WNOHANG) == $pid;
        sleep 0.1;
    }
    die "$self->{cmd}[0] did not start:\n" . $self->server_log;
}


sub server_log {
    my ($self) = @_;
    my $out = '';
    for my $f ("$self->{dir}/server.out", "$self->{dir}/dovecot.log") {
        next unless open my $fh, '<', $f;
        local $/;
        $out .= <$fh> // '';
    }
    return $out;
}


sub port { return $_[0]{port} }
sub dir  { return $_[0]{dir} }


sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    kill 'TERM', $pid;
    my $t0 = time;
    while (waitpid($pid, WNOHANG) == 0) {
        if (time - $t0 > 10) { kill 'KILL', $pid; waitpid($pid, 0); last }
        sleep 0.05;
    }
    # no socket left listening: "down" means connection refused
    $t0 = time;
    while (time - $t0 < 5
           && IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                    PeerPort => $self->{port}, Timeout => 1)) {
        sleep 0.1;
    }
}


sub start { my ($self) = @_; return $self->{pid} ? $self : $self->_spawn }

sub DESTROY { $_[0]->stop }

END { $_->stop for grep { defined } @LIVE }


# ---------------------------------------------------------------- IMAP

sub imap {
    my ($class, %o) = @_;
    my $self = bless { kind => 'imap', user => $o{user} // 'desk@orbit.test',
                       password => $o{password} // 'secret' }, $class;
    my $dir = $self->{dir} = _folder('imap');
    $self->{port} = _port();

    make_path("$dir/run", "$dir/state", "$dir/home");
    my (undef, undef, $uid, $gid) = getpwnam('nobody');
    chown $uid, $gid, "$dir/home";

    open my $pw, '>', "$dir/passwd" or die "$dir/passwd: $!";
    print $pw "$self->{user}:{PLAIN}$self->{password}::::::\n";
    close $pw;

    open my $c, '>', "$dir/dovecot.conf" or die "$dir/dovecot.conf: $!";
    print $c <<"_CONF_";
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = dovenull
default_internal_user = dovecot
mail_uid = nobody
mail_gid = nogroup
first_valid_uid = 1
mail_location = maildir:$dir/home/%u/Maildir
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dir/passwd
}
userdb {
  driver = static
  args = home=$dir/home/%u
}
service imap-login {
  inet_listener imap {
    port = $self->{port}
  }
  inet_listener imaps {
    port = 0
  }
}
service stats {
  unix_listener stats-reader {
    mode = 0666
  }
  unix_listener stats-writer {
    mode = 0666
  }
}
_CONF_
    close $c;

    $self->{cmd} = [ 'dovecot', '-F', '-c', "$dir/dovecot.conf" ];
    push @LIVE, $self;
    return $self->_spawn;
}


sub url { return $_[0]{kind} eq 'imap'
                 ? "imap://127.0.0.1:$_[0]{port}/INBOX"
                 : "smtp://127.0.0.1:$_[0]{port}" }


# one IMAP session: LOGIN, the commands, LOGOUT; returns every line
sub _session {
    my ($self, @cmds) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $self->{port}, Timeout => 10)
        or die "imap connect: $!";
    my @lines;
    my $read = sub {
        my ($tag) = @_;
        while (defined(my $l = <$s>)) {
            push @lines, $l;
            return $l if !defined $tag || $l =~ /^\Q$tag\E /;
            return $l if $tag eq '+' && $l =~ /^\+/;
        }
        die "imap: connection closed\n" . join('', @lines);
    };
    $read->(undef);
    my $n = 0;
    for my $cmd ([ "LOGIN \"$self->{user}\" \"$self->{password}\"" ], @cmds,
                 [ 'LOGOUT' ]) {
        my $tag = 'o' . ++$n;
        if (defined $cmd->[1]) {                # a literal
            print $s "$tag $cmd->[0] {" . length($cmd->[1]) . "}\r\n";
            $read->('+');
            print $s $cmd->[1] . "\r\n";
        } else {
            print $s "$tag $cmd->[0]\r\n";
        }
        my $l = $read->($tag);
        die "imap $cmd->[0]: $l" unless $l =~ /^\Q$tag\E OK/;
    }
    close $s;
    return @lines;
}


# appends a message (CRLF line ends are made of bare LFs); returns its UID
sub append {
    my ($self, $raw) = @_;
    $raw =~ s/\r?\n/\r\n/g;
    my @l = $self->_session([ 'APPEND INBOX', $raw ]);
    my ($uid) = map { /APPENDUID \d+ (\d+)/ ? $1 : () } @l;
    return $uid;
}


sub uidvalidity {
    my ($self) = @_;
    my @l = $self->_session([ 'SELECT INBOX' ]);
    my ($v) = map { /UIDVALIDITY (\d+)/ ? $1 : () } @l;
    return $v;
}


# ---------------------------------------------------------------- SMTP

sub smtp {
    my ($class, %o) = @_;
    my $self = bless { kind => 'smtp' }, $class;
    my $dir = $self->{dir} = _folder('smtp');
    $self->{port} = _port();
    make_path("$dir/spool");
    $self->{cmd} = [ '/usr/bin/python3', "$ROOT/t/mail/smtpd.py",
                     '--port', $self->{port}, '--spool', "$dir/spool",
                     ($o{auth} ? ('--auth', $o{auth}) : ()) ];
    push @LIVE, $self;
    return $self->_spawn;
}


sub force {
    my ($self, $reply) = @_;
    my $f = "$self->{dir}/spool/force-data";
    if (defined $reply) {
        open my $fh, '>', $f or die "$f: $!";
        print $fh "$reply\n";
        close $fh;
    } else {
        unlink $f;
    }
}


# the mails received, oldest first: { from, to => [...], authenticated,
# raw, name }
sub mails {
    my ($self) = @_;
    my $dir = "$self->{dir}/spool";
    opendir my $dh, $dir or return ();
    my @names = sort map { /^(.+)\.json$/ ? $1 : () } readdir $dh;
    my @m;
    for my $n (@names) {
        open my $j, '<', "$dir/$n.json" or next;
        local $/;
        my $meta = JSON::PP->new->decode(<$j>);
        open my $e, '<:raw', "$dir/$n.eml" or next;
        $meta->{raw} = <$e>;
        $meta->{name} = $n;
        push @m, $meta;
    }
    return @m;
}


sub wait_mails {
    my ($self, $n, $secs) = @_;
    my $t0 = time;
    while (time - $t0 < $secs) {
        my @m = $self->mails;
        return @m if @m >= $n;
        sleep 0.1;
    }
    return $self->mails;
}

1;
