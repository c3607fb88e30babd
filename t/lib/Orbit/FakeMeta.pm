package Orbit::FakeMeta;

=head1 NAME

Orbit::FakeMeta - Messenger and Instagram webhook payloads, and the fake
Graph API's own controls

=head1 SYNOPSIS

    use Orbit::Fake;
    use Orbit::FakeMeta;

    my $fb = Orbit::Fake->start('meta');        # t/node/fake-meta.js
    meta_tokens($fb, $page_id => 'EAAB-token');
    meta_tokens($fb, $ig_id => 'IGQ-token', object => 'instagram');
    meta_auto_status($fb, url => $hook, app_secret => $secret,
                     statuses => [ 'delivery', 'read' ], echo => 1);

    my $r = $fb->emit(url => $hook, secret => $secret,
                      payload => meta_text(page => $page_id, psid => $psid,
                                           text => 'hi'));

=head1 DESCRIPTION

Each builder returns a whole webhook body (../shared/PROTOCOLS.md section
2): one entry whose id is C<page> (the page id, or the Instagram account's
id), one C<messaging[]> event from C<psid> (the user's page-scoped id; IGSID
on Instagram) to the page, at C<timestamp> (ms; default now).  C<object>
is C<page> (default) or C<instagram>.  Defaults are in
C<%Orbit::FakeMeta::META>.

=over

=item meta_text(text => 'hello', mid => ..., quick_reply => $payload,
reply_to => $mid)

=item meta_attachment(type => 'image|video|audio|file|fallback|share|
story_mention|...', url => ..., text => ..., payload => {...}, attachments
=> [ {type, payload} ... ])

=item meta_postback(title => ..., payload => ..., mid => ... or undef)

=item meta_reaction(mid => $their_mid, action => 'react|unreact', emoji =>
"\x{2764}", reaction => 'love')

=item meta_delivery(mids => [...], watermark => $ms)

=item meta_read(watermark => $ms) or meta_read(mid => $mid)

=item meta_echo(mid => ..., text => ...)

Our own message coming back: from the page to the user, C<is_echo>.

=item meta_event(event => {...})

Any other event (the keys beside sender, recipient and timestamp).

=item meta_entries(@payloads)

One payload with every entry of @payloads (the first one's object).

=item meta_mid()

A new mid, shaped as Messenger's.

=back

Controls of the fake (besides Orbit::Fake's):

=over

=item meta_tokens($fake, $id => $token_or_arrayref, ..., object =>
'page|instagram')

The Bearer tokens the ids take (others get 401, code 190), and which
product they are (the shape of the message ids).

=item meta_auto_status($fake, url => $hook, app_secret => $secret,
statuses => [qw(delivery read)], echo => 1, delay => $ms)

After each message sent, signed webhooks to $hook (see fake-meta.js); no
url: off.

=back

=cut

use strict;
use warnings;

use Exporter qw(import);
use JSON::PP ();
use Time::HiRes qw(time);

our @EXPORT = qw(meta_text meta_attachment meta_postback meta_reaction
                 meta_delivery meta_read meta_echo meta_event meta_entries
                 meta_mid meta_tokens meta_auto_status);

our %META = (object => 'page', page => '104958271234567',
             psid => '6938210458812233');

my $seq = 0;

sub meta_mid {
    return sprintf 'm_%s%d', join('', map { ('A' .. 'Z', 'a' .. 'z', 0 .. 9,
                                             '-', '_')[rand 64] } 1 .. 40),
        ++$seq;
}

sub _now_ms { return int(time * 1000) }

# a payload of one event; %o: object, page, psid, timestamp, from_page
sub meta_event {
    my (%o) = (%META, @_);
    my $ts = $o{timestamp} // _now_ms();
    my ($from, $to) = $o{from_page} ? ($o{page}, $o{psid})
                                    : ($o{psid}, $o{page});
    return {
        object => $o{object},
        entry => [ { id => $o{page}, time => $ts, messaging => [ {
            sender => { id => $from }, recipient => { id => $to },
            timestamp => $ts, %{ $o{event} } } ] } ],
    };
}

sub _message {
    my ($o, $message) = @_;
    $message->{mid} = $o->{mid} // meta_mid() unless exists $message->{mid};
    $message->{reply_to} = { mid => $o->{reply_to} } if $o->{reply_to};
    my %rest = %$o;
    delete @rest{qw(mid reply_to text quick_reply type url payload
                    attachments)};
    return meta_event(%rest, event => { message => $message });
}

sub meta_text {
    my (%o) = @_;
    my $m = { text => $o{text} // 'hello' };
    $m->{quick_reply} = { payload => $o{quick_reply} }
        if defined $o{quick_reply};
    return _message(\%o, $m);
}

sub meta_attachment {
    my (%o) = @_;
    my $atts = $o{attachments} // [ {
        type => $o{type} // 'image',
        payload => $o{payload}
            // { url => $o{url} // 'https://scontent.example/p/1.jpg' } } ];
    my $m = { attachments => $atts };
    $m->{text} = $o{text} if defined $o{text};
    return _message(\%o, $m);
}

sub meta_echo {
    my (%o) = @_;
    return _message({ %o, from_page => 1 },
                    { text => $o{text} // 'echo', is_echo => JSON::PP::true,
                      app_id => 1517776481860111 });
}

sub meta_postback {
    my (%o) = (title => 'Get Started', payload => 'GET_STARTED', @_);
    my $pb = { title => delete $o{title}, payload => delete $o{payload} };
    if (exists $o{mid}) {
        my $mid = delete $o{mid};
        $pb->{mid} = $mid if defined $mid;
    } else {
        $pb->{mid} = meta_mid();
    }
    return meta_event(%o, event => { postback => $pb });
}

sub meta_reaction {
    my (%o) = (action => 'react', emoji => "\x{2764}", reaction => 'love',
               @_);
    my $r = { mid => delete $o{mid}, action => delete $o{action} };
    my ($emoji, $name) = (delete $o{emoji}, delete $o{reaction});
    if ($r->{action} eq 'react') {
        $r->{emoji} = $emoji;
        $r->{reaction} = $name;
    }
    return meta_event(%o, event => { reaction => $r });
}

sub meta_delivery {
    my (%o) = @_;
    my $d = { watermark => delete $o{watermark} // _now_ms() };
    my $mids = delete $o{mids};
    $d->{mids} = $mids if $mids;
    return meta_event(%o, event => { delivery => $d });
}

sub meta_read {
    my (%o) = @_;
    my $r = exists $o{mid} ? { mid => delete $o{mid} }
                           : { watermark => delete $o{watermark} // _now_ms() };
    return meta_event(%o, event => { read => $r });
}

sub meta_entries {
    my (@payloads) = @_;
    return { object => $payloads[0]{object},
             entry => [ map { @{ $_->{entry} } } @payloads ] };
}

sub meta_tokens {
    my ($fake, @args) = @_;
    my (%tokens, $object);
    while (my ($k, $v) = splice @args, 0, 2) {
        if ($k eq 'object') { $object = $v } else { $tokens{$k} = $v }
    }
    return $fake->control(POST => 'tokens', {
        tokens => \%tokens, (defined $object ? (object => $object) : ()) })
        ->{tokens};
}

sub meta_auto_status {
    my ($fake, %o) = @_;
    return $fake->control(POST => 'auto-status', { url => undef })
        unless $o{url};
    return $fake->control(POST => 'auto-status', {
        url => $o{url}, appSecret => $o{app_secret} // $o{secret},
        echo => $o{echo} ? JSON::PP::true : JSON::PP::false,
        (map { defined $o{$_} ? ($_ => $o{$_}) : () }
         qw(statuses delay)) });
}

1;
