package Orbit::FakeTwilio;

=head1 NAME

Orbit::FakeTwilio - the fake Twilio API (t/node/fake-twilio.js) and
Twilio's webhooks, signed as Twilio signs them

=head1 SYNOPSIS

    use Orbit::FakeTwilio;

    my $tw = Orbit::FakeTwilio->start;   # an Orbit::Fake of kind twilio
    $tw->accounts($account_sid => $auth_token);
    # nginx sends to $tw->url . "/2010-04-01/Accounts/$account_sid/..."

    my $r = $tw->emit_sms(url => $hook, token => $auth_token,
                          params => sms_params(From => '+4915112345678',
                                               To => $number,
                                               Body => 'hi'));
    is($r->{status}, 200);

    $tw->auto_status(statuses => [qw(queued sent delivered)]);
    is(twilio_signature('12345', $url, \@pairs), '0/KCTR6...');

=head1 DESCRIPTION

Orbit::Fake->start('twilio') starts the same fake; this class adds the
Twilio helpers to it (an Orbit::Fake in every other way: calls,
wait_calls, force, delay, outbox, reset).  The fake's wire behaviour is
documented at the top of t/node/fake-twilio.js.

=head2 Methods

=over

=item accounts($sid => $token, ...)

The accounts (SID and auth token) the fake knows: Basic auth, the
signature of their callbacks.

=item api_key($key_sid, $secret, $account_sid)

An API key of an account.

=item emit_sms(url => $url, token => $auth_token, params => \@pairs or
\%params, signature => $header_or_undef, sign_url => $url, headers =>
{...}, timeout => $s)

POSTs the params form-encoded to $url with X-Twilio-Signature over
C<sign_url> (default $url) and the params.  Returns C<{ status, headers,
body, sent => { body, signature } }>.

=item media(account => $sid, content => $bytes, mime_type => $type,
message => $mm_sid)

Registers media the fake serves: C<{ sid, url }>.  Its URL, under the
message (a new MM... by default), answers the account's Basic auth with a
307 to a short-lived URL C</s3/...> of the fake, which serves the bytes
only to a request without an Authorization header (as S3 does).

=item auto_status(statuses => [...], delay => $ms, error_code => $code,
via => 'http://127.0.0.1:PORT')

After each send with a StatusCallback, one signed callback per status.
C<via> stands for a TLS terminator: the callback goes to the same path on
that origin, signed over the StatusCallback URL.  No arguments: off.

=back

=head2 Functions (exported)

=over

=item twilio_signature($token, $url, \@pairs)

base64(HMAC-SHA1($token, $url . each name . value, sorted by name then
value)): X-Twilio-Signature.

=item sms_params(%override)

The pairs of an inbound SMS webhook as Twilio posts it (MessageSid,
SmsSid, SmsMessageSid, AccountSid, From, To, Body, NumMedia, NumSegments,
SmsStatus, ApiVersion, FromCountry...), with %override's values (a value
undef: the field left out; new names appended).

=item twilio_sid($prefix)

A new SID: the prefix and 32 hex digits.

=back

=cut

use strict;
use warnings;

use parent -norequire, 'Orbit::Fake';
use Digest::SHA qw(hmac_sha1_base64);
use Exporter qw(import);
use MIME::Base64 qw(encode_base64);
use Orbit::Fake ();

our @EXPORT = qw(twilio_signature sms_params twilio_sid);

sub start {
    my ($class, %o) = @_;
    my $self = Orbit::Fake->start('twilio', %o);
    return bless $self, $class;
}

sub accounts {
    my ($self, %accounts) = @_;
    return $self->control(POST => 'accounts', { accounts => \%accounts });
}

sub api_key {
    my ($self, $sid, $secret, $account) = @_;
    return $self->control(POST => 'accounts', {
        keys => { $sid => { secret => $secret, account => $account } } });
}

sub emit_sms {
    my ($self, %o) = @_;
    my $params = $o{params} // [];
    $params = [ map { [ $_, $params->{$_} ] } sort keys %$params ]
        if ref $params eq 'HASH';
    my %b = (url => $o{url}, authToken => $o{token}, params => $params,
             timeout => int(($o{timeout} // 10) * 1000));
    $b{signature} = $o{signature} if exists $o{signature};
    $b{signUrl} = $o{sign_url} if $o{sign_url};
    $b{headers} = $o{headers} if $o{headers};
    return $self->control(POST => 'emit', \%b);
}

sub media {
    my ($self, %o) = @_;
    return $self->control(POST => 'media', {
        account => $o{account}, mimeType => $o{mime_type} // 'image/jpeg',
        base64 => encode_base64($o{content} // '', ''),
        (defined $o{message} ? (message => $o{message}) : ()) });
}

sub auto_status {
    my ($self, %o) = @_;
    return $self->control(POST => 'auto-status', {
        statuses => $o{statuses},
        (defined $o{delay} ? (delay => $o{delay}) : ()),
        (defined $o{error_code} ? (errorCode => $o{error_code}) : ()),
        (defined $o{via} ? (via => $o{via}) : ()) });
}


sub twilio_signature {
    my ($token, $url, $pairs) = @_;
    my $data = join '', $url,
        map { $_->[0] . $_->[1] }
        sort { $a->[0] cmp $b->[0] || $a->[1] cmp $b->[1] } @$pairs;
    utf8::encode($data) if utf8::is_utf8($data);
    my $sig = hmac_sha1_base64($data, $token);
    $sig .= '=' while length($sig) % 4;    # Digest::SHA does not pad
    return $sig;
}

sub twilio_sid {
    my ($prefix) = @_;
    return ($prefix // 'SM') . join '', map { sprintf '%02x', int rand 256 }
                                        1 .. 16;
}

sub sms_params {
    my (%o) = @_;
    my $sid = twilio_sid('SM');
    my @pairs = (
        [ ToCountry => 'US' ], [ ToState => 'CA' ],
        [ SmsMessageSid => $sid ], [ NumMedia => '0' ], [ ToCity => '' ],
        [ FromZip => '' ], [ SmsSid => $sid ], [ FromState => '' ],
        [ SmsStatus => 'received' ], [ FromCity => '' ], [ Body => 'hello' ],
        [ FromCountry => 'DE' ], [ To => '+14155550100' ],
        [ MessagingServiceSid => undef ], [ ToZip => '' ],
        [ NumSegments => '1' ], [ MessageSid => $sid ],
        [ AccountSid => twilio_sid('AC') ], [ From => '+4915112345678' ],
        [ ApiVersion => '2010-04-01' ]);
    my %seen;
    for my $p (@pairs) {
        next unless exists $o{ $p->[0] };
        $p->[1] = $o{ $p->[0] };
        $seen{ $p->[0] } = 1;
    }
    # SmsSid and SmsMessageSid follow MessageSid unless given
    if (exists $o{MessageSid}) {
        for my $p (@pairs) {
            $p->[1] = $o{MessageSid}
                if $p->[0] =~ /^Sms(?:Message)?Sid\z/ && !exists $o{ $p->[0] };
        }
    }
    push @pairs, map { [ $_, $o{$_} ] } grep { !$seen{$_} } sort keys %o;
    return [ grep { defined $_->[1] } @pairs ];
}

1;
