package Orbit::FakeTelegram;

=head1 NAME

Orbit::FakeTelegram - Telegram updates, and the controls of the fake Bot API

=head1 SYNOPSIS

    use Orbit::Fake;
    use Orbit::FakeTelegram;

    my $tg = Orbit::Fake->start('telegram');   # t/node/fake-telegram.js
    my $token = tg_token();                     # "<bot id>:<secret>"
    tg_bots($tg, $token);
    tg_config($tg, allow_http => 1);
    # nginx: orbit_channel_api telegram <$tg->url>; setWebhook registers
    my $hook = tg_webhook($tg, $token);         # {url, secret_token, ...}
    my $r = tg_update($tg, $token, tg_text(text => 'hi'));   # to $hook
    is($r->{status}, 200);

=head1 DESCRIPTION

Functions, all exported.  Those taking C<$fake> drive an
C<< Orbit::Fake->start('telegram') >>; the others build Updates
(../shared/PROTOCOLS.md section 3).

=head2 Controls

=over

=item tg_token($bot_id)

A new token, C<< <bot id>:<35 characters> >> (a random bot id by default).

=item tg_bots($fake, @tokens)

The bots the fake knows; calls with other tokens get 401 Unauthorized.

=item tg_config($fake, allow_http => 1)

setWebhook takes http:// URLs on any port (the suites' nginx has no TLS).

=item tg_webhook($fake, $token)

What setWebhook registered: C<{ url, secret_token, allowed_updates,
max_connections }>, or undef.

=item tg_chat($fake, $token, chat => {...}, blocked => 1)

A chat the bot knows (an update makes its chat known too); C<blocked>: it
blocked the bot (sends get 403).

=item tg_file($fake, $token, content => $bytes, file_id => ..., file_path
=> ..., file_size => ...)

A file for getFile and its download; returns C<{ file_id, file_unique_id,
file_size, file_path }>.

=item tg_update($fake, $token, $update, secret => $secret_or_undef, url =>
$url, timeout => $s)

POSTs the Update to the webhook the bot registered, with the registered
C<X-Telegram-Bot-Api-Secret-Token> (C<secret>: that one; C<< secret =>
undef >>: none).  Returns like Orbit::Fake's emit: C<{ status, headers,
body, json }>.

=back

=head2 Updates

Each returns C<{ update_id, message => {...} }>.  Every one takes
C<update_id> (default: the next), C<message_id> (default: the next),
C<user> (C<{ id, first_name, last_name, username }>; defaults in
C<%Orbit::FakeTelegram::USER>), C<chat> (default the user's private chat),
C<date>, C<reply_to> (a message_id: C<reply_to_message> of that id),
C<caption>, C<edited> (a true value: C<edited_message> with C<edit_date>).

=over

=item tg_text(text => 'hello', entities => [...])

=item tg_photo(file_id => ..., sizes => 3)

C<photo>: one PhotoSize per size, the largest (file_id's) last.

=item tg_document(file_id, file_name, mime_type, file_size)

=item tg_voice(file_id, duration, mime_type, file_size)

=item tg_audio(file_id, duration, file_name, mime_type, title)

=item tg_video(file_id, duration, width, height, mime_type)

=item tg_sticker(file_id, emoji, is_animated, is_video)

=item tg_location(latitude, longitude)

=item tg_contact(phone_number, first_name, last_name, user_id)

=item tg_message(%fields)

Any message: the fields given as they are.

=back

=cut

use strict;
use warnings;

use Exporter qw(import);
use JSON::PP ();
use Orbit::Fake;

our @EXPORT = qw(tg_token tg_bots tg_config tg_webhook tg_chat tg_file
                 tg_update tg_message tg_text tg_photo tg_document tg_voice
                 tg_audio tg_video tg_sticker tg_location tg_contact);

our %USER = (id => 5_000_000_000 + $$ * 10, is_bot => JSON::PP::false,
             first_name => 'Tatiana', last_name => 'Volkova',
             username => 'tvolkova', language_code => 'en');

my $update_id = 700_000_000 + ($$ % 1000) * 1000;
my $message_id = 100;

my @ALNUM = ('A' .. 'Z', 'a' .. 'z', '0' .. '9', '_', '-');

sub tg_token {
    my ($id) = @_;
    $id //= 6_000_000_000 + int rand 999_999_999;
    return "$id:AA" . join '', map { $ALNUM[rand @ALNUM] } 1 .. 33;
}

sub tg_bots {
    my ($fake, @tokens) = @_;
    return $fake->control(POST => 'bots', {
        bots => [ map { { token => $_ } } @tokens ] })->{bots};
}

sub tg_config {
    my ($fake, %o) = @_;
    return $fake->control(POST => 'config', {
        allowHttp => $o{allow_http} ? JSON::PP::true : JSON::PP::false });
}

sub tg_webhook {
    my ($fake, $token) = @_;
    return $fake->control(GET => 'webhook', undef, token => $token)
        ->{webhook};
}

sub tg_chat {
    my ($fake, $token, %o) = @_;
    return $fake->control(POST => 'chat', {
        token => $token, chat => $o{chat},
        blocked => $o{blocked} ? JSON::PP::true : JSON::PP::false });
}

sub tg_file {
    my ($fake, $token, %o) = @_;
    require MIME::Base64;
    return $fake->control(POST => 'file', {
        token => $token,
        base64 => MIME::Base64::encode_base64($o{content} // '', ''),
        (defined $o{file_id} ? (fileId => $o{file_id}) : ()),
        (defined $o{file_path} ? (filePath => $o{file_path}) : ()),
        (defined $o{file_size} ? (fileSize => $o{file_size}) : ()) });
}

sub tg_update {
    my ($fake, $token, $update, %o) = @_;
    my %b = (token => $token, update => $update,
             timeout => int(($o{timeout} // 10) * 1000));
    $b{secret} = $o{secret} if exists $o{secret};
    $b{url} = $o{url} if $o{url};
    my $r = $fake->control(POST => 'update', \%b);
    $r->{json} = eval { JSON::PP->new->utf8->decode($r->{body}) }
        if defined $r->{body};
    return $r;
}

# an Update of one message: the common keys, and %fields as they are
sub tg_message {
    my (%o) = @_;
    my %common = map { $_ => delete $o{$_} }
        grep { exists $o{$_} }
        qw(update_id message_id user chat date reply_to caption edited);
    my $user = $common{user} // \%USER;
    my $chat = $common{chat} // {
        id => $user->{id}, type => 'private',
        map { defined $user->{$_} ? ($_ => $user->{$_}) : () }
        qw(first_name last_name username) };
    my $m = { message_id => $common{message_id} // ++$message_id,
              from => $user, chat => $chat,
              date => $common{date} // time, %o };
    $m->{caption} = $common{caption} if defined $common{caption};
    if (defined $common{reply_to}) {
        $m->{reply_to_message} = {
            message_id => $common{reply_to}, from => $user, chat => $chat,
            date => time - 60, text => 'an earlier message' };
    }
    my $kind = 'message';
    if ($common{edited}) {
        $kind = 'edited_message';
        $m->{edit_date} = $m->{date} + 5;
    }
    return { update_id => $common{update_id} // ++$update_id, $kind => $m };
}

sub _file_id { return 'AgAC' . join '', map { $ALNUM[rand @ALNUM] } 1 .. 40 }

# tg_message with the type's object from the options named
sub _typed {
    my ($type, $args, $defaults, @optional) = @_;
    my %o = (%$defaults, @$args);
    my %obj = map { defined $o{$_} ? ($_ => $o{$_}) : () }
              keys %$defaults, @optional;
    delete @o{ keys %$defaults, @optional };
    return tg_message(%o, $type => \%obj);
}

sub tg_text {
    my (%o) = @_;
    return tg_message(text => 'hello', %o);
}

sub tg_photo {
    my (%o) = @_;
    my $id = delete $o{file_id} // _file_id();
    my $n = delete $o{sizes} // 3;
    my @sizes = map { +{ file_id => $_ == $n ? $id : _file_id(),
                         file_unique_id => "u$_" . int rand 1e6,
                         width => 90 * $_, height => 60 * $_,
                         file_size => 1000 * $_ * $_ } } 1 .. $n;
    return tg_message(photo => \@sizes, %o);
}

sub tg_document {
    return _typed(document => \@_, {
        file_id => _file_id(), file_unique_id => 'AgADdoc' . int rand 1e6,
        file_name => 'invoice.pdf', mime_type => 'application/pdf',
        file_size => 48213 });
}

sub tg_voice {
    return _typed(voice => \@_, {
        file_id => _file_id(), file_unique_id => 'AgADvoc' . int rand 1e6,
        duration => 3, mime_type => 'audio/ogg', file_size => 9120 });
}

sub tg_audio {
    return _typed(audio => \@_, {
        file_id => _file_id(), file_unique_id => 'AgADaud' . int rand 1e6,
        duration => 184, mime_type => 'audio/mpeg', file_size => 2_941_022 },
        qw(file_name title performer));
}

sub tg_video {
    return _typed(video => \@_, {
        file_id => _file_id(), file_unique_id => 'AgADvid' . int rand 1e6,
        width => 1280, height => 720, duration => 12,
        mime_type => 'video/mp4', file_size => 1_802_114 },
        qw(file_name));
}

sub tg_sticker {
    return _typed(sticker => \@_, {
        file_id => _file_id(), file_unique_id => 'AgADstk' . int rand 1e6,
        type => 'regular', width => 512, height => 512,
        is_animated => JSON::PP::false, is_video => JSON::PP::false,
        emoji => "\x{1f44d}", file_size => 23_554 });
}

sub tg_location {
    return _typed(location => \@_,
                  { latitude => 59.93863, longitude => 30.31413 });
}

sub tg_contact {
    return _typed(contact => \@_, {
        phone_number => '+79991234567', first_name => 'Ivan' },
        qw(last_name user_id vcard));
}

1;
