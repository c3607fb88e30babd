package Orbit::WS;

=head1 NAME

Orbit::WS - a raw, frame-level WebSocket (RFC 6455) client for the suites

=head1 SYNOPSIS

    use Orbit::WS qw(encode_frame decode_frame accept_for);

    my $ws = Orbit::WS->connect($port, '/ws',
                                headers => { Authorization => "Bearer $jwt" });
    ok($ws->ok, 'upgraded') or diag($ws->error);

    $ws->send_text('hello');
    my $m = $ws->recv_message(2);           # {opcode => 1, payload => ...}

    $ws->send_frame(opcode => 'text', payload => 'Hel', fin => 0);
    $ws->send_frame(opcode => 'continuation', payload => 'lo', chunks => 5);
    $ws->send_frame(opcode => 'text', payload => 'x', rsv => 4);   # RSV1
    $ws->send_frame(opcode => 'binary', payload => 'abc', mask => 0);
    $ws->raw("\x81\x85");                   # a header and nothing more

    my $c = $ws->expect_close(2);           # the server's close frame
    is($c->{code}, 1002, 'protocol error');
    ok($c->{closed}, '... and then the server closed the connection');

    my $no = Orbit::WS->connect($port, '/ws');   # no Authorization
    is($no->status, 401, 'refused');
    like($no->body, qr/Unauthorized/);

=head1 DESCRIPTION

Pure Perl, core modules only (IO::Socket::INET, IO::Select, Digest::SHA,
MIME::Base64, Time::HiRes, Socket).  Nothing happens automatically: the
client answers no ping and no close unless a test asks (the one exception is
C<expect_close>, which by default answers the server's close frame as a
client must, so that a server waiting for it closes the connection).  Every
read takes a timeout, in seconds (fractions allowed); the default is the
C<timeout> given to C<connect> (5).

Payloads are bytes.  A character string (Perl's UTF-8 flag on) is encoded
as UTF-8 first; a byte string goes out as it is, so invalid UTF-8 is
C<"\xff\xfe">.  Received payloads are always bytes
(C<Encode::decode('UTF-8', ...)> them to compare with character strings).

Opcodes are numbers (0 to 15) or names: C<continuation> (or C<cont>),
C<text>, C<binary>, C<close>, C<ping>, C<pong>.  Constants OP_CONT, OP_TEXT,
OP_BINARY, OP_CLOSE, OP_PING and OP_PONG are exported on request.

=head2 Orbit::WS->connect($port, $path, %opts)

Opens a TCP connection to 127.0.0.1:$port and does the HTTP/1.1 upgrade
with a random Sec-WebSocket-Key.  Always returns an Orbit::WS object:
C<ok> is true when the answer was 101 with C<Upgrade: websocket>,
C<Connection: Upgrade> and the right Sec-WebSocket-Accept.  Otherwise
C<status>, C<headers> and C<body> tell what the server said (a 400, 401,
426, or a plain page from a server that does not speak WebSocket) and
C<error> why it is not an upgrade (also "connect ...: ..." when the TCP
connection failed, with status undef).  Bytes the server sent after its 101
(frames sent at once) are kept for the first read.

Options:

    host      => '127.0.0.1'
    timeout   => 5             # connect, handshake, and the reads' default
    headers   => { Name => 'value' } or [ Name => 'value', ... ]
                 # added after the standard ones; one with a standard
                 # header's name replaces it, and undef as the value leaves
                 # the header out ('Sec-WebSocket-Version' => 8,
                 # 'Sec-WebSocket-Key' => undef, Upgrade => undef, Host => ...)
    protocols => ['chat', ...] # Sec-WebSocket-Protocol
    origin    => 'http://...'  # Origin
    key       => '...'         # this Sec-WebSocket-Key, not a random one
    method    => 'GET'         # request line: method
    version   => 'HTTP/1.1'    #               and protocol
    request   => "GET / ...\r\n\r\n"  # send this instead, byte for byte
    chunks    => N             # write the request in N pieces (see send_frame)

=head2 Response accessors

C<ok>, C<status> (undef when no HTTP answer came), C<status_text>,
C<headers> (hashref, lower-case names, repeated headers joined with ", "),
C<header($name)>, C<body> (decoded when chunked), C<response_head> (the raw
status line and headers), C<error>, C<key> (the Sec-WebSocket-Key sent),
C<subprotocol> (the Sec-WebSocket-Protocol answered), C<sock>.

=head2 $ws->send_frame(%frame)

Builds a frame (see C<encode_frame>) and writes it.  Besides the frame's
fields, C<chunks =E<gt> N> writes its bytes in N pieces (at most one a byte)
with C<chunk_delay> seconds (0.01) between them.  Returns 1, or 0 when the
write failed (C<error> says why: the server may have closed the
connection).

=head2 send_text($string, %frame), send_binary($bytes, %frame),
ping($payload, %frame), pong($payload, %frame)

One frame of that opcode (C<fin =E<gt> 0>, C<rsv>, C<mask>, C<chunks>, ...
may be given too).

=head2 $ws->close($code, $reason, %frame)

A close frame: the code as 2 bytes then the reason; no payload when $code is
undef.  Only writes the frame (use C<expect_close> for the answer).

=head2 $ws->raw($bytes, chunks => N, chunk_delay => S)

Writes arbitrary bytes.  Returns 1 or 0 as send_frame.

=head2 $ws->recv_frame($timeout)

The next frame from the server, as

    { opcode => 1, type => 'text', fin => 1, rsv => 0, masked => 0,
      mask => undef, length => 5, header_length => 2, payload => 'hello' }

C<rsv> is the three RSV bits as a number (4 = RSV1, 2 = RSV2, 1 = RSV3);
C<length> is the length field as sent; C<header_length> 2, 4 or 10 (+4 when
masked) shows which length encoding the server used.  Returns undef when no
whole frame came in time (then C<timed_out> is true) or when the server
closed the connection first (C<eof> is true; C<reset> too when it reset
it).

=head2 $ws->recv_message($timeout)

The next message: data frames up to the one with FIN are joined (the hash of
the first frame, with C<payload> the joined payloads, C<frames> their
number, C<fin> 1).  A control frame is returned by itself as soon as it
comes, even between the fragments of a message (whose fragments so far are
kept for the next call).  A continuation with no message open, or a new data
frame inside a fragmented message, comes back as that frame with C<error>
set (the unfinished message in C<partial>).  Returns undef as recv_frame
does.  Nothing is answered.

=head2 $ws->expect_close($timeout, reply => 1)

Reads until the server's close frame (frames before it are collected), then
answers it with a close frame echoing its code (unless C<reply =E<gt> 0>,
or a close was already sent), then waits, within the same timeout, for the
server to close the TCP connection; once it has, closes this side too (as
RFC 6455 7.1.1 has a client do).  Returns

    { got_close => 1,          # a close frame came
      code      => 1000,       # undef: no code (payload shorter than 2)
      reason    => 'bye',      # bytes; undef when no code
      payload   => "\x03\xe8bye",
      closed    => 1,          # the server then closed the connection
      reset     => 0,          # ... with a reset
      timed_out => 0,          # waited the whole timeout for something
      frames    => [ ... ],    # frames read before the close frame
      after     => '' }        # bytes the server sent after its close

When the connection ends with no close frame, got_close is 0 and closed 1.

=head2 $ws->is_closed($timeout)

True when the server has closed the connection (or this side did, with
C<disconnect>), waiting up to $timeout (default 0) for it.  Data that comes
meanwhile is kept for the next read.

=head2 Other methods

C<eof>, C<reset>, C<timed_out> (of the last read); C<buffered> (bytes read
but not yet taken as frames); C<shutdown_write> (half-close: FIN to the
server); C<disconnect> (close the socket).

=head2 Functions (exported on request)

C<encode_frame(%frame)> returns a frame's bytes.  Fields: C<opcode>
(required), C<payload> (''), C<fin> (1), C<rsv> (0: three bits as a number,
4 = RSV1), C<mask> (1: masked with a random key; 0: unmasked),
C<mask_key> (these 4 bytes as the key), C<len_override> (put this number in
the length field whatever the payload's length: a lying length),
C<len_width> (7, 16 or 64: that length encoding even when not the shortest).

C<decode_frame(\$buffer)> takes one frame off the front of $buffer and
returns it as recv_frame does, or undef (the buffer untouched) when the
buffer does not hold a whole frame yet.

C<accept_for($key)> is the Sec-WebSocket-Accept a server must answer to
$key.

=cut

use strict;
use warnings;

use Carp qw(croak);
use Digest::SHA qw(sha1);
use Errno qw(EAGAIN EINTR EWOULDBLOCK);
use Exporter qw(import);
use IO::Select ();
use IO::Socket::INET ();
use MIME::Base64 qw(encode_base64);
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time sleep);

use constant {
    OP_CONT => 0, OP_TEXT => 1, OP_BINARY => 2,
    OP_CLOSE => 8, OP_PING => 9, OP_PONG => 10,
};

our @EXPORT_OK = qw(encode_frame decode_frame accept_for
                    OP_CONT OP_TEXT OP_BINARY OP_CLOSE OP_PING OP_PONG);

my %OPCODE = (continuation => 0, cont => 0, text => 1, binary => 2,
              close => 8, ping => 9, pong => 10);
my %OPNAME = (0 => 'continuation', 1 => 'text', 2 => 'binary',
              8 => 'close', 9 => 'ping', 10 => 'pong');

my $GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

sub accept_for { return encode_base64(sha1($_[0] . $GUID), '') }

sub _bytes {
    my ($s) = @_;
    $s = '' unless defined $s;
    utf8::encode($s) if utf8::is_utf8($s);
    return $s;
}

sub _random_bytes { return join '', map { chr int rand 256 } 1 .. $_[0] }

sub _xor {
    my ($data, $key) = @_;
    my $n = length $data;
    return $data unless $n;
    return $data ^ substr($key x (($n >> 2) + 1), 0, $n);
}

sub _opcode {
    my ($op) = @_;
    croak 'opcode required' unless defined $op;
    return $op if $op =~ /^\d+\z/ && $op < 16;
    return $OPCODE{$op} // croak "unknown opcode '$op'";
}


# ------------------------------------------------------------ frames

sub encode_frame {
    my (%o) = @_;
    my $op = _opcode($o{opcode});
    my $payload = _bytes($o{payload});
    my $fin = $o{fin} // 1;
    my $rsv = $o{rsv} // 0;
    croak "rsv is 3 bits (0..7), not $rsv" if $rsv < 0 || $rsv > 7;

    my $key;
    if (defined $o{mask_key}) {
        croak 'mask_key: 4 bytes' unless length $o{mask_key} == 4;
        $key = $o{mask_key};
    } elsif ($o{mask} // 1) {
        $key = _random_bytes(4);
    }

    my $len = $o{len_override} // length $payload;
    my $width = $o{len_width}
        // ($len < 126 ? 7 : $len < 65536 ? 16 : 64);
    my $b0 = ($fin ? 0x80 : 0) | ($rsv << 4) | $op;
    my $b1 = defined $key ? 0x80 : 0;
    my $head;
    if ($width == 7) {
        croak "length $len does not fit 7 bits" if $len > 127;
        $head = pack 'CC', $b0, $b1 | $len;
    } elsif ($width == 16) {
        croak "length $len does not fit 16 bits" if $len > 65535;
        $head = pack 'CCn', $b0, $b1 | 126, $len;
    } elsif ($width == 64) {
        $head = pack 'CCQ>', $b0, $b1 | 127, $len;
    } else {
        croak "len_width: 7, 16 or 64, not $width";
    }
    return defined $key ? $head . $key . _xor($payload, $key)
                        : $head . $payload;
}

sub decode_frame {
    my ($buf) = @_;
    my $have = length $$buf;
    return undef if $have < 2;
    my ($b0, $b1) = unpack 'CC', $$buf;
    my $len = $b1 & 0x7f;
    my $off = 2;
    if ($len == 126) {
        return undef if $have < 4;
        $len = unpack 'n', substr($$buf, 2, 2);
        $off = 4;
    } elsif ($len == 127) {
        return undef if $have < 10;
        $len = unpack 'Q>', substr($$buf, 2, 8);
        $off = 10;
    }
    my $masked = $b1 >> 7;
    my $key;
    if ($masked) {
        return undef if $have < $off + 4;
        $key = substr $$buf, $off, 4;
        $off += 4;
    }
    return undef if $have - $off < $len;
    my $payload = substr $$buf, $off, $len;
    substr($$buf, 0, $off + $len, '');
    my $op = $b0 & 0x0f;
    return {
        opcode => $op, type => $OPNAME{$op} // "reserved-$op",
        fin => $b0 >> 7, rsv => ($b0 >> 4) & 7,
        masked => $masked, mask => $key, length => $len,
        header_length => $off,
        payload => $masked ? _xor($payload, $key) : $payload,
    };
}


# ------------------------------------------------------------ connect

sub connect {
    my ($class, $port, $path, %o) = @_;
    my $self = bless {
        port => $port, path => $path // '/', rbuf => '', eof => 0,
        reset => 0, timed_out => 0, ok => 0, status => undef,
        headers => {}, body => '', error => undef,
        timeout => $o{timeout} // 5,
    }, $class;
    my $host = $o{host} // '127.0.0.1';
    my $deadline = time + $self->{timeout};

    my $sock = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port,
                                     Proto => 'tcp',
                                     Timeout => $self->{timeout});
    if (!$sock) {
        $self->{error} = "connect $host:$port: " . ($@ || $!);
        return $self;
    }
    binmode $sock;
    setsockopt($sock, IPPROTO_TCP, TCP_NODELAY, 1);
    $self->{sock} = $sock;

    $self->{key} = exists $o{key} ? $o{key}
                                  : encode_base64(_random_bytes(16), '');
    my $req = $o{request} // $self->_request($host, %o);
    if (!$self->raw($req, chunks => $o{chunks})) {
        $self->{error} = "sending the request: $self->{error}";
        return $self;
    }
    $self->_read_response($deadline);
    return $self;
}

sub _request {
    my ($self, $host, %o) = @_;
    my @std = (
        Host => "$host:$self->{port}",
        Upgrade => 'websocket',
        Connection => 'Upgrade',
        'Sec-WebSocket-Key' => $self->{key},
        'Sec-WebSocket-Version' => 13,
    );
    push @std, 'Sec-WebSocket-Protocol' => join(', ', @{ $o{protocols} })
        if $o{protocols};
    push @std, Origin => $o{origin} if defined $o{origin};

    my $extra = $o{headers} // [];
    $extra = [ map { $_ => $extra->{$_} } sort keys %$extra ]
        if ref $extra eq 'HASH';

    my @names;
    my %value;
    my $add = sub {
        my ($name, $value) = @_;
        my $lc = lc $name;
        push @names, $name unless exists $value{$lc};
        $value{$lc} = $value;
    };
    for (my $i = 0; $i < @std; $i += 2) { $add->($std[$i], $std[$i + 1]) }
    for (my $i = 0; $i < @$extra; $i += 2) {
        $add->($extra->[$i], $extra->[$i + 1]);
    }
    my $req = sprintf "%s %s %s\r\n", $o{method} // 'GET', $self->{path},
                      $o{version} // 'HTTP/1.1';
    for my $name (@names) {
        my $v = $value{ lc $name };
        $req .= "$name: $v\r\n" if defined $v;
    }
    return "$req\r\n";
}

sub _read_response {
    my ($self, $deadline) = @_;
    my $end;
    until (($end = index $self->{rbuf}, "\r\n\r\n") >= 0) {
        next if $self->_fill($deadline);
        $self->{error} = $self->{eof}
            ? 'the server closed the connection without an HTTP answer'
            : 'no HTTP answer in time';
        $self->{error} .= ' (got: ' . _show($self->{rbuf}) . ')'
            if length $self->{rbuf};
        return;
    }
    my $head = substr $self->{rbuf}, 0, $end + 4, '';
    $self->{response_head} = $head;
    my ($line, @lines) = split /\r\n/, $head;
    if ($line !~ m{^HTTP/\d\.\d (\d{3})(?: (.*))?$}) {
        $self->{error} = 'not an HTTP answer: ' . _show($line);
        return;
    }
    $self->{status} = $1;
    $self->{status_text} = $2 // '';
    for (@lines) {
        my ($n, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
        $n = lc $n;
        $self->{headers}{$n} = exists $self->{headers}{$n}
            ? "$self->{headers}{$n}, $v" : $v;
    }
    my $h = $self->{headers};

    if ($self->{status} == 101) {
        my @bad;
        push @bad, 'no "Upgrade: websocket"'
            unless ($h->{upgrade} // '') =~ /^websocket$/i;
        push @bad, 'no "Connection: Upgrade"'
            unless ($h->{connection} // '') =~ /(?:^|,)\s*upgrade\s*(?:,|$)/i;
        my $want = accept_for($self->{key} // '');
        push @bad, 'Sec-WebSocket-Accept is '
                   . ($h->{'sec-websocket-accept'} // 'missing')
                   . ", not $want"
            unless ($h->{'sec-websocket-accept'} // '') eq $want;
        if (@bad) {
            $self->{error} = '101 but ' . join('; ', @bad);
        } else {
            $self->{ok} = 1;
        }
        return;
    }

    $self->{error} = "HTTP $self->{status}, not 101";
    return if $self->{status} =~ /^1/ || $self->{status} == 204
              || $self->{status} == 304;
    if (($h->{'transfer-encoding'} // '') =~ /chunked/i) {
        $self->{body} = $self->_read_chunked($deadline);
    } elsif (defined $h->{'content-length'}) {
        my $want = $h->{'content-length'};
        while (length $self->{rbuf} < $want) {
            last unless $self->_fill($deadline);
        }
        $self->{body} = substr $self->{rbuf}, 0, $want, '';
    } else {    # to the end of the connection
        1 while $self->_fill($deadline);
        $self->{body} = $self->{rbuf};
        $self->{rbuf} = '';
    }
    return;
}

sub _read_chunked {
    my ($self, $deadline) = @_;
    my $body = '';
    while (1) {
        my $eol;
        until (($eol = index $self->{rbuf}, "\r\n") >= 0) {
            return $body unless $self->_fill($deadline);
        }
        my ($size) = substr($self->{rbuf}, 0, $eol) =~ /^([0-9a-fA-F]+)/;
        return $body unless defined $size;
        $size = hex $size;
        if ($size == 0) {    # trailers, then the empty line
            my $stop;
            until (($stop = index $self->{rbuf}, "\r\n\r\n", $eol) >= 0) {
                last unless $self->_fill($deadline);
            }
            substr($self->{rbuf}, 0, $stop + 4, '') if $stop >= 0;
            return $body;
        }
        while (length $self->{rbuf} < $eol + 2 + $size + 2) {
            return $body . substr($self->{rbuf}, $eol + 2)
                unless $self->_fill($deadline);
        }
        $body .= substr $self->{rbuf}, $eol + 2, $size;
        substr($self->{rbuf}, 0, $eol + 2 + $size + 2, '');
    }
}

sub _show {
    my ($s) = @_;
    $s = substr($s, 0, 200) . '...' if length $s > 200;
    $s =~ s/([^\x20-\x7e])/sprintf '\\x%02x', ord $1/ge;
    return $s;
}


# ------------------------------------------------------------ accessors

sub ok            { return $_[0]{ok} }
sub status        { return $_[0]{status} }
sub status_text   { return $_[0]{status_text} }
sub headers       { return $_[0]{headers} }
sub header        { return $_[0]{headers}{ lc $_[1] } }
sub body          { return $_[0]{body} }
sub response_head { return $_[0]{response_head} }
sub error         { return $_[0]{error} }
sub key           { return $_[0]{key} }
sub subprotocol   { return $_[0]{headers}{'sec-websocket-protocol'} }
sub sock          { return $_[0]{sock} }
sub eof           { return $_[0]{eof} }
sub reset         { return $_[0]{reset} }
sub timed_out     { return $_[0]{timed_out} }
sub buffered      { return length $_[0]{rbuf} }


# ------------------------------------------------------------ I/O

# Reads what there is, waiting until $deadline.  1: got bytes; 0: nothing
# (then eof, or timed out).
sub _fill {
    my ($self, $deadline) = @_;
    my $sock = $self->{sock};
    return 0 if $self->{eof} || !$sock;
    my $sel = IO::Select->new($sock);
    while (1) {
        my $left = $deadline - time;
        $left = 0 if $left < 0;
        $! = 0;
        if (!$sel->can_read($left)) {
            next if $!{EINTR} && $left > 0;
            return 0;
        }
        my $n = sysread $sock, my $chunk, 65536;
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            $self->{eof} = 1;
            $self->{reset} = 1;
            $self->{error} = "read: $!";
            return 0;
        }
        if ($n == 0) {
            $self->{eof} = 1;
            return 0;
        }
        $self->{rbuf} .= $chunk;
        return 1;
    }
}

sub _write {
    my ($self, $bytes) = @_;
    my $sock = $self->{sock};
    if (!$sock) {
        $self->{error} = 'not connected';
        return 0;
    }
    local $SIG{PIPE} = 'IGNORE';
    my $sel = IO::Select->new($sock);
    my $off = 0;
    while ($off < length $bytes) {
        $! = 0;
        if (!$sel->can_write($self->{timeout})) {
            next if $!{EINTR};
            $self->{error} = 'write: the server reads nothing';
            return 0;
        }
        my $n = syswrite $sock, $bytes, length($bytes) - $off, $off;
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            $self->{error} = "write: $!";
            return 0;
        }
        $off += $n;
    }
    return 1;
}

sub raw {
    my ($self, $bytes, %o) = @_;
    $bytes = _bytes($bytes);
    my $len = length $bytes;
    my $n = $o{chunks} // 1;
    $n = $len if $n > $len;
    $n = 1 if $n < 1;
    my $delay = $o{chunk_delay} // 0.01;
    my $off = 0;
    for my $i (1 .. $n) {
        my $size = int(($len - $off) / ($n - $i + 1));
        $self->_write(substr $bytes, $off, $size) or return 0;
        $off += $size;
        sleep $delay if $i < $n && $delay > 0;
    }
    return 1;
}

sub send_frame {
    my ($self, %o) = @_;
    my %send = (chunks => delete $o{chunks},
                chunk_delay => delete $o{chunk_delay});
    return $self->raw(encode_frame(%o), %send);
}

sub send_text   { my ($s, $p, %o) = @_; $s->_send_op(1, $p, %o) }
sub send_binary { my ($s, $p, %o) = @_; $s->_send_op(2, $p, %o) }
sub ping        { my ($s, $p, %o) = @_; $s->_send_op(9, $p, %o) }
sub pong        { my ($s, $p, %o) = @_; $s->_send_op(10, $p, %o) }

sub _send_op {
    my ($self, $op, $payload, %o) = @_;
    return $self->send_frame(%o, opcode => $op, payload => $payload);
}

sub close {
    my ($self, $code, $reason, %o) = @_;
    my $payload = defined $code ? pack('n', $code) . _bytes($reason) : '';
    $self->{close_sent} = 1;
    return $self->send_frame(%o, opcode => 8, payload => $payload);
}

sub recv_frame {
    my ($self, $timeout) = @_;
    my $deadline = time + ($timeout // $self->{timeout});
    $self->{timed_out} = 0;
    while (1) {
        my $f = decode_frame(\$self->{rbuf});
        return $f if $f;
        next if $self->_fill($deadline);
        $self->{timed_out} = 1 unless $self->{eof};
        return undef;
    }
}

sub recv_message {
    my ($self, $timeout) = @_;
    my $deadline = time + ($timeout // $self->{timeout});
    while (1) {
        my $left = $deadline - time;
        my $f = $self->recv_frame($left > 0 ? $left : 0) or return undef;
        $f->{frames} = 1;
        return $f if $f->{opcode} >= 8;

        my $open = $self->{partial};
        if ($f->{opcode} == 0) {
            if (!$open) {
                $f->{error} = 'a continuation frame with no message open';
                return $f;
            }
            $open->{payload} .= $f->{payload};
            $open->{frames}++;
            $open->{masked} ||= $f->{masked};
            $open->{rsv_any} |= $f->{rsv};
            next unless $f->{fin};
            delete $self->{partial};
            $open->{fin} = 1;
            return $open;
        }
        if ($open) {
            delete $self->{partial};
            $f->{error} = 'a new data frame inside a fragmented message';
            $f->{partial} = $open;
            return $f;
        }
        return $f if $f->{fin};
        $f->{rsv_any} = $f->{rsv};
        $self->{partial} = $f;
    }
}

sub expect_close {
    my ($self, $timeout, %o) = @_;
    my $deadline = time + ($timeout // $self->{timeout});
    my %r = (got_close => 0, code => undef, reason => undef,
             payload => undef, closed => 0, reset => 0, timed_out => 0,
             frames => [], after => '');
    my $left = sub { my $l = $deadline - time; $l > 0 ? $l : 0 };

    while (1) {
        my $f = $self->recv_frame($left->());
        if (!$f) {
            @r{qw(closed reset timed_out)} =
                ($self->{eof}, $self->{reset}, $self->{eof} ? 0 : 1);
            return \%r;
        }
        if ($f->{opcode} == 8) {
            $r{got_close} = 1;
            $r{frame} = $f;
            $r{payload} = $f->{payload};
            if (length $f->{payload} >= 2) {
                $r{code} = unpack 'n', $f->{payload};
                $r{reason} = substr $f->{payload}, 2;
            }
            last;
        }
        push @{ $r{frames} }, $f;
    }

    if (($o{reply} // 1) && !$self->{close_sent} && !$self->{eof}) {
        $self->close($r{code});
    }
    1 while $self->_fill($deadline);
    $r{after} = $self->{rbuf};
    $self->{rbuf} = '';
    @r{qw(closed reset timed_out)} =
        ($self->{eof}, $self->{reset}, $self->{eof} ? 0 : 1);
    $self->disconnect if $self->{eof};    # as a client does, after the server
    return \%r;
}

sub is_closed {
    my ($self, $timeout) = @_;
    return 1 if !$self->{sock} || $self->{eof};
    my $deadline = time + ($timeout // 0);
    1 while $self->_fill($deadline);
    return $self->{eof} ? 1 : 0;
}

sub shutdown_write {
    my ($self) = @_;
    return $self->{sock} ? shutdown($self->{sock}, 1) : 0;
}

sub disconnect {
    my ($self) = @_;
    if ($self->{sock}) {
        CORE::close($self->{sock});
        delete $self->{sock};
    }
    return 1;
}

sub DESTROY { $_[0]->disconnect if $_[0]{sock} }

1;
