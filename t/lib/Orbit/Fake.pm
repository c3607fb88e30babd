package Orbit::Fake;

=head1 NAME

Orbit::Fake - the suites' fakes of outside services, and WhatsApp webhooks

=head1 SYNOPSIS

    use Orbit::Fake;

    my $wa = Orbit::Fake->start('whatsapp');   # t/node/fake-whatsapp.js
    $wa->tokens('106540352242922' => 'EAAG-token');
    # nginx sends to $wa->url . '/v21.0/106540352242922/messages'
    $wa->force({ status => 500, times => 2 },
               { status => 429, headers => { 'Retry-After' => 2 } },
               { error => 131047 });
    my $calls = $wa->wait_calls(4, path => '/v21.0/', timeout => 10);
    is($calls->[3]{json}{to}, '16315551234');

    # an inbound webhook, signed as Meta signs it
    my $r = $wa->emit(url => "http://127.0.0.1:$port/webhooks/whatsapp",
                      secret => $app_secret,
                      payload => wa_text(body => 'hi', name => 'Ana'));
    is($r->{status}, 200);

    my $peer = Orbit::Fake->start('api-peer');  # t/node/fake-api-peer.js
    $peer->secret('s3cret');
    my ($d) = @{ $peer->wait_calls(1, outcome => 'accepted') };
    $peer->emit(url => ..., secret => 's3cret', payload => {
        statuses => [ { id => $d->{peerId}, status => 'read',
                        timestamp => time } ] });

=head1 DESCRIPTION

Each fake is a small Node HTTP server (t/node/fake-*.js; their control API
and, for the API channel, the wire format are documented at the top of those
files and of t/node/fake-common.js), started with Orbit::Node's node_server
on a free port below 32768 and stopped at the end of the test, also when it
dies (Orbit::Node's END) or when the object goes.

Every request the fake gets is recorded as a call:

    { index => 0, method => 'POST', path => '/v21.0/123/messages',
      query => {}, headers => { authorization => 'Bearer t', ... },
      body => '{"messaging_product":...}',   # raw, as characters
      size => 123, json => {...} or undef, time => 1700000000.123,
      outcome => 'sent',                      # what the fake made of it
      response => { status => 200, headers => {...}, body => '...' },
      clientClosedAt => ...,                  # closed before the answer
      # whatsapp "sent": wamid, waId; api-peer: delivery, peerId,
      # duplicateOf; forced: forced => { what was forced } }

Outcomes: whatsapp C<sent read unauthorized invalid media download deleted
unknown>; api-peer C<accepted duplicate rejected invalid>; both C<forced
hang close>.

=head2 Orbit::Fake->start($kind, %opts)

$kind: C<whatsapp> or C<api-peer>.  Options go to node_server (C<timeout>,
the fake's hard time limit, defaults to 600 s).  Dies when it does not
start.

=head2 Methods

=over

=item url, port, pid

C<http://127.0.0.1:PORT>, PORT, the Node process's id.

=item stop

Stops it; Orbit::Node's status hash (C<stderr>: what it wrote there).

=item reset

Forgets calls, outbox, forced answers, delay, tokens, media, auto-status,
secret and deliveries.

=item calls(%filter)

The recorded calls (arrayref, in order).  Filters: C<since> (an index),
C<path> (a prefix), C<method>, C<outcome>.

=item wait_calls($n, %filter, timeout => 5)

Polls calls(%filter) until there are $n of them or the timeout; returns
them (fewer when the time ran out).

=item outbox(since => $i), wait_outbox($n, since => $i, timeout => 5)

What the fake POSTed (its emits and auto-statuses): C<{ index, kind
('emit' or 'auto-status'), url, body, signature, time, status,
responseBody, error }>.

=item force(@responses)

Queues forced answers; each request takes the first queued one that
matches it (C<path> prefix, C<method>).  A response: C<{ status => 503,
body => {...} or 'text', headers => {...}, delay => $ms, times => $n }>,
C<{ hang => 1 }> (never answered), C<{ close => 1 }> (connection dropped;
C<< close => 'reset' >>: an RST), C<{ delay => $ms }> (answered as usual,
late).  whatsapp: C<{ error => 131047 }> is Graph's error of that code
(100 190 2500 130429 131000 131009 131026 131047 131056 132001 are known;
C<status>, C<message>, C<details> override).  Returns how many are pending.

=item pending

The forced answers not yet taken (arrayref).

=item delay($ms)

Every answer from now on waits $ms after processing (0: none).

=item emit(url => $url, secret => $secret, payload => $hashref_or_string,
bytes => $raw_bytes, signature => $header_or_undef, headers => {...},
timeout => $seconds)

POSTs the body (a hash or array: as JSON; a string: as it is, UTF-8;
C<bytes>: these bytes) to $url with C<Content-Type: application/json> and
C<X-Hub-Signature-256: sha256=HEX> over the raw body with C<secret>
(C<app_secret> is the same).  C<< signature => 'sha256=00' >> sends that
header instead; C<< signature => undef >> sends none.  Returns C<{ status,
headers, body, json (when the body is JSON), sent => { body, signature },
error (when the target could not be reached; status undef) }>.

=item control($method, $name, $body, %query)

A raw control request (C</__control/$name>); the decoded answer.  Dies on
a status other than 200.

=back

whatsapp only:

=over

=item tokens($phone_number_id => $token_or_arrayref, ...)

The Bearer tokens each phone number id takes (others get 401, code 190);
media takes any of them.  Returns all (hashref).

=item media(id => $id, mime_type => $type, content => $bytes)

Registers media (C<id> defaults to a random numeric one) for C<GET
/VERSION/ID> and its download url.  Returns C<{ id, mime_type, sha256
(hex), file_size }>.

=item auto_status(url => $url, app_secret => $secret, statuses => [qw(sent
delivered read)], delay => $ms, error => { code => 131047, title => '...'
}, waba_id => $id, display_phone_number => $number)

After each successful send, one signed C<statuses> webhook per status to
$url, C<delay> ms apart (default 10), as Meta sends them (C<failed> with
C<error>, default 131026).  No arguments: off.

=back

api-peer only:

=over

=item secret($secret)

The channel secret deliveries must be signed with (none: all rejected).

=back

=head2 WhatsApp webhook payloads (exported)

Each returns a whole webhook body (../shared/PROTOCOLS.md section 1): one
entry, one change, one message (and its sender in C<contacts>) or one
status.  Every one takes C<phone_number_id>, C<display_phone_number>,
C<waba_id>, C<wa_id> (the user), C<name> (profile name), C<wamid> (the
message's id; default a new one), C<timestamp> (unix s; default now; sent
as a string as Meta does), and, for messages, C<reply_to> (a wamid:
C<context> C<{from => display_phone_number, id => reply_to}>) or
C<context> (the hash itself).  Defaults are in C<%Orbit::Fake::WA>.

=over

=item wa_text(body => 'hello')

=item wa_media(type => 'image|video|audio|document|sticker', id =>
$media_id, mime_type => ..., sha256 => ..., caption => ..., filename =>
..., voice => JSON::PP::true, animated => ...)

Optional keys only when given; C<id>, C<mime_type>, C<sha256> have
defaults.

=item wa_location(latitude => ..., longitude => ..., name => ..., address =>
..., url => ...)

=item wa_contacts(contacts => [ { name => { formatted_name => ... }, phones
=> [ { phone, wa_id, type } ] } ])

=item wa_button_reply(id => ..., title => ...), wa_list_reply(id => ...,
title => ..., description => ...)

C<interactive> replies.

=item wa_button(payload => ..., text => ...)

A template's quick-reply button.

=item wa_reaction(message_id => $wamid, emoji => "\x{1f44d}")

=item wa_message(type => $type, content => $object)

Any other type (C<order>, C<system>, C<unsupported>, ...).

=item wa_status(status => 'sent|delivered|read|failed', wamid => ...,
wa_id => ..., errors => [ { code, title } ], category => 'service',
pricing => 0)

C<recipient_id> is wa_id.  sent and delivered carry C<conversation> and
C<pricing> (C<< pricing => 0 >>: not); failed carries C<errors> (default
131026), each filled with C<message> and C<error_data.details>.

=item wa_combine(@payloads)

One payload, one entry, one change holding every message, sender
(once each) and status of @payloads; the first one's metadata.

=item wa_changes(@payloads), wa_entries(@payloads)

One entry holding all their changes; one payload holding all their
entries.

=item wa_wamid($wa_id)

A new wamid, shaped as Meta's.

=item hub_signature($secret, $bytes)

C<sha256=HEX>, the X-Hub-Signature-256 of a body.

=back

=cut

use strict;
use warnings;

use Carp qw(croak);
use Digest::SHA qw(hmac_sha256_hex sha256_hex);
use Encode ();
use Exporter qw(import);
use HTTP::Tiny ();
use JSON::PP ();
use MIME::Base64 qw(encode_base64);
use Time::HiRes qw(time sleep);
use Orbit::Node qw(node_server);

our @EXPORT = qw(wa_text wa_media wa_location wa_contacts wa_button_reply
                 wa_list_reply wa_button wa_reaction wa_message wa_status
                 wa_combine wa_changes wa_entries wa_wamid hub_signature);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;
my %SCRIPT = (whatsapp => 'fake-whatsapp.js',
              'api-peer' => 'fake-api-peer.js',
              meta => 'fake-meta.js',
              telegram => 'fake-telegram.js',
              twilio => 'fake-twilio.js',    # helpers: Orbit::FakeTwilio
              s3 => 'fake-s3.js');

sub start {
    my ($class, $kind, %o) = @_;
    my $script = $SCRIPT{$kind}
        or croak "no fake '$kind' (" . join(', ', sort keys %SCRIPT) . ')';
    my $node = node_server($script, timeout => 600, %o);
    return bless { kind => $kind, node => $node, port => $node->port,
                   http => HTTP::Tiny->new(timeout => 15) }, $class;
}

sub port { return $_[0]{port} }
sub pid  { return $_[0]{node}->pid }
sub url  { return "http://127.0.0.1:$_[0]{port}" }
sub stop { return $_[0]{node}->stop }

sub control {
    my ($self, $method, $name, $body, %query) = @_;
    my $url = $self->url . "/__control/$name";
    my $q = $self->{http}->www_form_urlencode(
        { map { $_ => $query{$_} } grep { defined $query{$_} } keys %query });
    $url .= "?$q" if length $q;
    my %req = defined $body
            ? (content => $JSON->encode($body),
               headers => { 'Content-Type' => 'application/json' })
            : ();
    my $http = $self->{http};
    if ($body && ref $body eq 'HASH' && $body->{timeout}) {
        $http = HTTP::Tiny->new(timeout => $body->{timeout} / 1000 + 5);
    }
    my $res = $http->request($method, $url, \%req);
    croak "$self->{kind} $method $name: $res->{status} $res->{content}"
        unless $res->{status} == 200;
    return $JSON->decode($res->{content});
}

sub reset { return $_[0]->control(POST => 'reset', {}) }

sub calls {
    my ($self, %f) = @_;
    return $self->control(GET => 'calls', undef, %f)->{calls};
}

sub outbox {
    my ($self, %f) = @_;
    return $self->control(GET => 'outbox', undef, %f)->{outbox};
}

sub _wait {
    my ($self, $what, $n, %f) = @_;
    my $deadline = time + (delete $f{timeout} // 5);
    while (1) {
        my $list = $self->$what(%f);
        return $list if @$list >= $n || time >= $deadline;
        sleep 0.02;
    }
}

sub wait_calls  { my $self = shift; return $self->_wait('calls', @_) }
sub wait_outbox { my $self = shift; return $self->_wait('outbox', @_) }

sub force {
    my ($self, @responses) = @_;
    return $self->control(POST => 'force', { responses => \@responses })
        ->{pending};
}

sub pending { return $_[0]->control(GET => 'force')->{pending} }

sub delay {
    my ($self, $ms) = @_;
    return $self->control(POST => 'delay', { ms => $ms // 0 })->{ms};
}

sub emit {
    my ($self, %o) = @_;
    my %b = (url => $o{url}, secret => $o{secret} // $o{app_secret});
    if (exists $o{bytes}) {
        $b{payloadBase64} = encode_base64($o{bytes}, '');
    } else {
        $b{payload} = $o{payload};
    }
    $b{signature} = $o{signature} if exists $o{signature};
    $b{headers} = $o{headers} if $o{headers};
    $b{timeout} = int(($o{timeout} // 10) * 1000);
    my $r = $self->control(POST => 'emit', \%b);
    $r->{json} = eval { $JSON->decode(Encode::encode_utf8($r->{body})) }
        if defined $r->{body}
           && ($r->{headers}{'content-type'} // '') =~ m{application/json};
    return $r;
}

sub tokens {
    my ($self, %tokens) = @_;
    return $self->control(POST => 'tokens', { tokens => \%tokens })->{tokens};
}

sub media {
    my ($self, %o) = @_;
    return $self->control(POST => 'media', {
        (defined $o{id} ? (id => "$o{id}") : ()),
        mimeType => $o{mime_type} // 'application/octet-stream',
        base64 => encode_base64($o{content} // '', '') });
}

sub auto_status {
    my ($self, %o) = @_;
    return $self->control(POST => 'auto-status', { url => undef })
        unless $o{url};
    return $self->control(POST => 'auto-status', {
        url => $o{url}, appSecret => $o{app_secret} // $o{secret},
        (map { defined $o{$_} ? ($_ => $o{$_}) : () }
         qw(statuses delay error)),
        (defined $o{waba_id} ? (wabaId => $o{waba_id}) : ()),
        (defined $o{display_phone_number}
         ? (displayPhoneNumber => $o{display_phone_number}) : ()) });
}

sub secret {
    my ($self, $secret) = @_;
    return $self->control(POST => 'secret', { secret => $secret })->{secret};
}


# --- WhatsApp webhook payloads

our %WA = (phone_number_id => '106540352242922',
           display_phone_number => '15550783881',
           waba_id => '102290129340398',
           wa_id => '16315551234', name => 'Kerry Fisher');

sub hub_signature {
    my ($secret, $bytes) = @_;
    return 'sha256=' . hmac_sha256_hex($bytes, $secret);
}

my $wamid_seq = 0;

# base64 of the recipient and 18 hex digits, framed as Meta's are
sub wa_wamid {
    my ($wa_id) = @_;
    $wa_id //= $WA{wa_id};
    my $hex = sprintf('%06X', ++$wamid_seq % 0x1000000)
            . join('', map { sprintf '%02X', int rand 256 } 1 .. 6);
    return 'wamid.' . encode_base64(
        "\x1c\x18" . chr(length $wa_id) . $wa_id
        . "\x15\x02\x00\x11\x18" . chr(length $hex) . $hex . "\x00", '');
}

sub _wa_opts {
    my %o = (%WA, timestamp => time, @_);
    $o{timestamp} = int $o{timestamp};
    $o{wamid} //= wa_wamid($o{wa_id});
    return \%o;
}

sub _wa_payload {
    my ($o, %value) = @_;
    return {
        object => 'whatsapp_business_account',
        entry => [ { id => $o->{waba_id}, changes => [ {
            value => {
                messaging_product => 'whatsapp',
                metadata => {
                    display_phone_number => $o->{display_phone_number},
                    phone_number_id => $o->{phone_number_id} },
                %value },
            field => 'messages' } ] } ],
    };
}

# keys of %o that are set, as a hash
sub _given {
    my ($o, @keys) = @_;
    return map { defined $o->{$_} ? ($_ => $o->{$_}) : () } @keys;
}

sub wa_message {
    my (%args) = @_;
    my $type = delete $args{type} // croak 'wa_message: no type';
    my $content = delete $args{content};
    my $o = _wa_opts(%args);
    my $m = { from => $o->{wa_id}, id => $o->{wamid},
              timestamp => "$o->{timestamp}", type => $type };
    $m->{$type} = $content if defined $content;
    if ($o->{context}) {
        $m->{context} = $o->{context};
    } elsif ($o->{reply_to}) {
        $m->{context} = { from => $o->{display_phone_number},
                          id => $o->{reply_to} };
    }
    return _wa_payload($o,
        contacts => [ { profile => { name => $o->{name} },
                        wa_id => $o->{wa_id} } ],
        messages => [ $m ]);
}

# wa_message with the type's content from the options named
sub _wa_typed {
    my ($type, $args, $defaults, @optional) = @_;
    my %o = (%$defaults, @$args);
    my %content = _given(\%o, keys %$defaults, @optional);
    delete @o{ keys %$defaults, @optional };
    return wa_message(%o, type => $type, content => \%content);
}

sub wa_text {
    return _wa_typed(text => \@_, { body => 'hello' });
}

my %MIME = (image => 'image/jpeg', video => 'video/mp4',
            audio => 'audio/ogg; codecs=opus', document => 'application/pdf',
            sticker => 'image/webp');

sub wa_media {
    my (%o) = @_;
    my $type = delete $o{type} // 'image';
    croak "wa_media: no type $type" unless $MIME{$type};
    my $id = $o{id} // int(1e15 + rand 9e15);
    return _wa_typed($type, [ %o ], {
        id => "$id", mime_type => $MIME{$type}, sha256 => sha256_hex($id) },
        qw(caption filename voice animated));
}

sub wa_location {
    return _wa_typed(location => \@_,
                     { latitude => 38.9, longitude => -77.03 },
                     qw(name address url));
}

sub wa_contacts {
    my (%o) = @_;
    my $contacts = delete $o{contacts} // [ {
        name => { formatted_name => 'John Smith', first_name => 'John',
                  last_name => 'Smith' },
        phones => [ { phone => '+1 (555) 010-0000', wa_id => '15550100000',
                      type => 'CELL' } ] } ];
    return wa_message(%o, type => 'contacts', content => $contacts);
}

sub _wa_interactive {
    my ($kind, $args, $defaults, @optional) = @_;
    my %o = (%$defaults, @$args);
    my %reply = _given(\%o, keys %$defaults, @optional);
    delete @o{ keys %$defaults, @optional };
    return wa_message(%o, type => 'interactive',
                      content => { type => $kind, $kind => \%reply });
}

sub wa_button_reply {
    return _wa_interactive(button_reply => \@_,
                           { id => 'button-1', title => 'Yes' });
}

sub wa_list_reply {
    return _wa_interactive(list_reply => \@_,
                           { id => 'row-1', title => 'First' },
                           'description');
}

sub wa_button {
    return _wa_typed(button => \@_, { payload => 'yes', text => 'Yes' });
}

sub wa_reaction {
    return _wa_typed(reaction => \@_,
                     { message_id => wa_wamid(), emoji => "\x{1f44d}" });
}

sub wa_status {
    my (%args) = @_;
    my $o = _wa_opts(status => 'delivered', category => 'service',
                     pricing => 1, %args);
    my $s = { id => $o->{wamid}, status => $o->{status},
              timestamp => "$o->{timestamp}", recipient_id => $o->{wa_id} };
    if ($o->{pricing} && $o->{status} =~ /^(?:sent|delivered)\z/) {
        $s->{conversation} = {
            id => $o->{conversation_id}
                  // substr(sha256_hex("$o->{wa_id} $o->{wamid}"), 0, 32),
            origin => { type => $o->{category} } };
        $s->{conversation}{expiration_timestamp} = $o->{timestamp} + 86400 . ''
            if $o->{status} eq 'sent';
        $s->{pricing} = { billable => JSON::PP::true, pricing_model => 'CBP',
                          category => $o->{category} };
    }
    if ($o->{status} eq 'failed' || $o->{errors}) {
        my $errors = $o->{errors}
            // [ { code => 131026, title => 'Message undeliverable' } ];
        $s->{errors} = [ map { +{
            message => $_->{title}, error_data => { details => $_->{title} },
            %$_ } } @$errors ];
    }
    return _wa_payload($o, statuses => [ $s ]);
}

sub _changes { return map { @{ $_->{changes} } } @{ $_[0]{entry} } }

sub wa_combine {
    my (@payloads) = @_;
    my (%seen, %list);
    my $first = (_changes($payloads[0]))[0]{value};
    for my $v (map { $_->{value} } map { _changes($_) } @payloads) {
        push @{ $list{contacts} },
            grep { !$seen{ $_->{wa_id} }++ } @{ $v->{contacts} // [] };
        push @{ $list{$_} }, @{ $v->{$_} // [] } for qw(messages statuses);
    }
    return _wa_payload(
        { waba_id => $payloads[0]{entry}[0]{id}, %{ $first->{metadata} } },
        map { @{ $list{$_} } ? ($_ => $list{$_}) : () }
        qw(contacts messages statuses));
}

sub wa_changes {
    my (@payloads) = @_;
    return { object => 'whatsapp_business_account',
             entry => [ { id => $payloads[0]{entry}[0]{id},
                          changes => [ map { _changes($_) } @payloads ] } ] };
}

sub wa_entries {
    my (@payloads) = @_;
    return { object => 'whatsapp_business_account',
             entry => [ map { @{ $_->{entry} } } @payloads ] };
}

1;
