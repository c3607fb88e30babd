# The Email channel end to end against real servers (t/lib/Orbit/Mail.pm):
# Dovecot for IMAP, aiosmtpd for SMTP.  A connection is set up (an IMAP
# login) and gets its channel.poll job, which repeats; mails appended to
# the mailbox become contacts, conversations and messages; polled twice
# (even with its cursor gone) each mail is stored once; a reply in the
# thread from another address lands in the same conversation; encoded
# words, quoted-printable, base64 and ISO-8859-1 come out as UTF-8; an
# attachment is listed.  An agent's reply goes out over SMTP (with AUTH)
# exactly once with From, To, Subject, In-Reply-To, References and both
# MIME parts; a 5xx fails the message with the server's text, a server
# that is down is retried; nothing from the customer reaches a header
# raw.  A bad password fails the setup, and a poll whose login is refused
# fails its job and the connection's setup with the server's reason.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use MIME::Base64 qw(encode_base64);
use Orbit::Test;
use Orbit::Mail;

my $W = Orbit::Nginx::valgrind_enabled() ? 40 : 12;

my $user = uniq('desk') . '@acme.test';
my $pass = 'S3cret-' . uniq('');
my $imap = Orbit::Mail->imap(user => $user, password => $pass);
my $smtp = Orbit::Mail->smtp(auth => "$user:$pass");

my $HTTP = <<"_EOC_";
orbit_jobs_backoff 200ms max=1s;
orbit_jobs_poll 1s;
_EOC_

my $t = orbit_nginx(workers => 2, http_extra => $HTTP);
$t->start;

my $ta = make_tenant('mail');
my $admin = make_user($ta, 'ADMIN');
my $tok = user_token($admin, $ta, 'ADMIN');

# --- the connection: set up with an IMAP login, then polled
my $r = api($t, 'POST', '/api/v1/channels', token => $tok,
            body => { channel => 'email', name => 'Support',
                      accountId => $user,
                      config => { smtpUrl => $smtp->url,
                                  imapUrl => $imap->url,
                                  fromName => 'Acme Support',
                                  pollInterval => 10 },
                      credentials => { username => $user,
                                       password => $pass } });
is($r->{status}, 201, 'an email connection is created')
    or die "cannot go on: $r->{body}";
my $cid = $r->{json}{id};

ok(wait_until($W, sub { setup($cid) eq 'ok' }), '... its setup is ok')
    or diag(psql("SELECT setup FROM channel_connections WHERE id = '$cid'"));

ok(wait_until($W, sub { poll_row($cid) =~ /^queued\|0\|true$/ }),
   'its channel.poll job ran and waits for its next run (REPEAT)')
    or diag(poll_row($cid), ' ', psql("SELECT last_error FROM jobs WHERE"
                                      . " kind = 'channel.poll'"));
my $validity = $imap->uidvalidity;
is(psql("SELECT uidvalidity || ' ' || last_uid FROM email_cursors"
        . " WHERE connection_id = '$cid'"), "$validity 0",
   '... with its cursor at the empty mailbox\'s UIDVALIDITY');

# --- mail in
$imap->append(mail(from => 'Ana Lima <Ana@Cust.test>', id => '<m1@cust.test>',
                   subject => 'Order 1234', body => "Where is my order?\n"));
poll_now($cid);

my $conv = psql("SELECT conversation_id FROM messages WHERE tenant_id = '$ta'"
                . " AND provider_message_id = '<m1\@cust.test>'");
ok($conv, 'a polled mail becomes a message');

$r = api($t, 'GET', '/api/v1/conversations?channel=email', token => $tok);
my ($c) = grep { $_->{id} eq $conv } @{ $r->{json}{data} // [] };
ok($c, '... in a conversation of the inbox') or diag($r->{body});
is($c && $c->{contact}{name}, 'Ana Lima', '... with the sender as its contact');
is($c && $c->{contact}{email}, 'ana@cust.test',
   '... whose email is the address, lowercased');

$r = api($t, 'GET', "/api/v1/conversations/$conv/messages", token => $tok);
my ($m1) = @{ $r->{json}{data} // [] };
is_deeply($m1 && [ @{ $m1->{content} }{qw(text subject from to messageId)} ],
          [ 'Where is my order?', 'Order 1234', 'ana@cust.test', $user,
            '<m1@cust.test>' ],
          '... its content: text, subject, from, to, Message-ID')
    or diag($r->{body});
is(psql("SELECT external_id FROM contact_identities WHERE tenant_id = '$ta'"
        . " AND channel = 'email'"), 'ana@cust.test',
   'the contact is known by the address');

# --- an agent's reply goes out by SMTP
$r = api($t, 'POST', '/api/v1/messages', token => $tok,
         body => { conversationId => $conv, replyToId => $m1->{id},
                   content => "It ships today.\nThanks, Acme = us" });
is($r->{status}, 201, 'an agent answers') or diag($r->{body});
my $out = $r->{json};
my @mails = $smtp->wait_mails(1, $W);
is(scalar @mails, 1, 'the SMTP server receives one mail');
my $mail = $mails[0] // {};
is_deeply([ $mail->{from}, $mail->{to}, $mail->{authenticated} ],
          [ $user, [ 'ana@cust.test' ], JSON::PP::true ],
          '... from the mailbox to the customer, logged in');
my %h = headers($mail->{raw} // '');
is($h{from}, "\"Acme Support\" <$user>", '... From: name and address');
is($h{to}, 'ana@cust.test', '... To: the contact\'s address');
is($h{subject}, 'Re: Order 1234', '... Subject: Re: the customer\'s');
is($h{'in-reply-to'}, '<m1@cust.test>', '... In-Reply-To: the mail answered');
is($h{references}, '<m1@cust.test>', '... References: the thread');
is($h{'message-id'}, "<$out->{id}\@acme.test>",
   '... Message-ID: our id at our domain');
like($h{date} // '', qr/^\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d \+0000$/,
     '... Date');
like($h{'content-type'} // '', qr{^multipart/alternative; boundary="}, '... MIME');
my $qp = "Content-Transfer-Encoding: quoted-printable\r\n\r\n";
my $raw = $mail->{raw} // '';
ok(index($raw, "Content-Type: text/plain; charset=UTF-8\r\n$qp"
                . "It ships today.\r\nThanks, Acme =3D us\r\n") > 0,
   '... a text/plain part, quoted-printable');
my $hp = index($raw, "Content-Type: text/html; charset=UTF-8\r\n$qp");
ok($hp > 0 && index($raw, "It ships today.<br>\r\nThanks, Acme =3D us", $hp)
   > $hp, '... and a text/html part of the same text');
ok(wait_until($W, sub { msg($out->{id}) eq "sent|<$out->{id}\@acme.test>|" }),
   '... the message is sent, its provider id our Message-ID')
    or diag(msg($out->{id}));

# --- the customer answers in the thread, from another address, in UTF-8
my $subj = "Re: Order 1234 \x{2013} \x{e7}a marche";
utf8::encode(my $subj8 = $subj);
$imap->append(mail(from => '"Ana (home)" <ana@home.test>', id => '<m2@home.test>',
                   subject => '=?UTF-8?B?' . encode_base64($subj8, '') . '?=',
                   irt => "<$out->{id}\@acme.test>",
                   refs => "<m1\@cust.test> <$out->{id}\@acme.test>",
                   cte => 'quoted-printable', charset => 'UTF-8',
                   body => "Gr=C3=A9at, merci =E2=82=AC=\n!\n"));
# and a new customer: ISO-8859-1 in base64, with an attachment
my $latin = encode_base64("Ol\xe1, tudo bem? Pre\xe7o: 10\xa4\n");
$imap->append(<<"_MAIL_");
From: =?ISO-8859-1?Q?Jo=E3o?= <joao\@pt.test>
To: $user
Subject: =?ISO-8859-1?Q?Pre=E7o?=
Message-ID: <m3\@pt.test>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="zz"

--zz
Content-Type: text/plain; charset=ISO-8859-1
Content-Transfer-Encoding: base64

$latin
--zz
Content-Type: application/pdf; name="fatura.pdf"
Content-Disposition: attachment; filename="fatura.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQKJcfsj6IK
--zz--
_MAIL_
poll_now($cid);

my $m2 = psql("SELECT conversation_id || '|' || (content->>'subject') || '|'"
              . " || (content->>'text') || '|' || (content->>'from') FROM messages"
              . " WHERE tenant_id = '$ta'"
              . " AND provider_message_id = '<m2\@home.test>'");
utf8::decode($m2);
is($m2, "$conv|$subj|Gr\x{e9}at, merci \x{20ac}!|ana\@home.test",
   'a reply in the thread from another address: same conversation, its'
   . ' subject (encoded word) and quoted-printable body in UTF-8');
is(psql("SELECT reply_to_id FROM messages WHERE tenant_id = '$ta'"
        . " AND provider_message_id = '<m2\@home.test>'"), $out->{id},
   '... a reply to our message');
my $m3 = psql("SELECT content FROM messages WHERE tenant_id = '$ta'"
              . " AND provider_message_id = '<m3\@pt.test>'");
my $m3j = eval { JSON::PP->new->utf8->decode($m3) } // {};
is_deeply([ @{$m3j}{qw(subject text)} ],
          [ "Pre\x{e7}o", "Ol\x{e1}, tudo bem? Pre\x{e7}o: 10\x{a4}" ],
          'ISO-8859-1 in base64 comes out as UTF-8') or diag($m3);
is_deeply($m3j->{attachments},
          [ { name => 'fatura.pdf', type => 'application/pdf', size => 15 } ],
          '... and its attachment is listed');
isnt(psql("SELECT conversation_id FROM messages WHERE tenant_id = '$ta'"
          . " AND provider_message_id = '<m3\@pt.test>'"), $conv, '... in a conversation of its own');

# --- polled again, even from scratch: each mail once
my $count = sub { psql("SELECT count(*) FROM messages WHERE tenant_id = '$ta'"
                       . " AND direction = 'inbound'") };
is($count->(), 3, 'three mails in');
poll_now($cid);
is($count->(), 3, 'polled again: nothing new');
psql("DELETE FROM email_cursors WHERE connection_id = '$cid'");
poll_now($cid);
is($count->(), 3, 'polled with its cursor gone: the Message-IDs dedupe');
is(psql("SELECT last_uid FROM email_cursors WHERE connection_id = '$cid'"),
   3, '... and the cursor is back at the newest UID');

# --- nothing from the customer reaches a header raw
$imap->append(mail(from => 'Eve <eve@cust.test>', id => '<m4@cust.test>',
                   subject => '=?UTF-8?Q?Hi=0D=0ABcc:_spy@evil.test?=',
                   body => "hello\n"));
poll_now($cid);
my $econv = psql("SELECT conversation_id FROM messages WHERE tenant_id"
                 . " = '$ta' AND provider_message_id = '<m4\@cust.test>'");
$r = api($t, 'POST', '/api/v1/messages', token => $tok,
         body => { conversationId => $econv, content => 'Hi Eve' });
@mails = $smtp->wait_mails(2, $W);
my ($eve) = grep { $_->{to}[0] eq 'eve@cust.test' } @mails;
my ($head) = split /\r\n\r\n/, ($eve // {})->{raw} // '', 2;
ok($eve && $head !~ /^bcc:/mi
   && $head =~ /^Subject: Re: Hi  Bcc: spy\@evil\.test\r$/m,
   'a subject with CR LF in it: one line, no header injected')
    or diag($head);
is_deeply($eve && $eve->{to}, [ 'eve@cust.test' ], '... one recipient');

# --- SMTP refuses: failed with its reply; down: retried
$smtp->force('554 5.7.1 Rejected: looks like spam');
$r = api($t, 'POST', '/api/v1/messages', token => $tok,
         body => { conversationId => $conv, content => 'buy now' });
my $bad = $r->{json}{id};
ok(wait_until($W, sub { msg($bad) =~ /^failed\|/ }), 'a 5xx fails the message');
like(msg($bad), qr/554 5\.7\.1 Rejected: looks like spam/,
     '... with the server\'s reply');
is(psql("SELECT attempts || ' ' || status FROM jobs WHERE kind = 'message.send'"
        . " AND payload->>'messageId' = '$bad'"), '1 failed', '... at once');
$smtp->force(undef);

$smtp->stop;
$r = api($t, 'POST', '/api/v1/messages', token => $tok,
         body => { conversationId => $conv, content => 'after the outage' });
my $late = $r->{json}{id};
ok(wait_until($W, sub { psql("SELECT attempts FROM jobs WHERE kind ="
                             . " 'message.send' AND payload->>'messageId'"
                             . " = '$late'") >= 2 }),
   'the SMTP server is down: the send is retried');
like(psql("SELECT last_error FROM jobs WHERE kind = 'message.send' AND"
          . " payload->>'messageId' = '$late'"), qr/onnect/,
     '... for the connection refused');
is(msg($late), 'queued||', '... and the message waits');
$smtp->start;
ok(wait_until(3 * $W, sub { msg($late) =~ /^sent\|/ }),
   'the server is back: sent') or diag(msg($late));
is(scalar(grep { ($_->{raw} // '') =~ /after the outage/ } $smtp->mails), 1,
   '... once');

# --- a bad password: the setup fails, and no poll
$r = api($t, 'POST', '/api/v1/channels', token => $tok,
         body => { channel => 'email', name => 'Sales',
                   accountId => uniq('sales') . '@acme.test',
                   config => { smtpUrl => $smtp->url, imapUrl => $imap->url },
                   credentials => { username => $user,
                                    password => 'wrong' } });
my $bid = $r->{json}{id};
ok(wait_until($W, sub { setup($bid) eq 'failed' }),
   'a bad password: the setup fails');
like(psql("SELECT setup->'error'->>'title' FROM channel_connections"
          . " WHERE id = '$bid'"), qr/^IMAP: NO .*auth/i,
     '... with the server\'s reason');
is(psql("SELECT count(*) FROM jobs WHERE kind = 'channel.poll' AND"
        . " payload->>'connectionId' = '$bid'"), 0, '... and it is not polled');

# --- the password changes on the server: the poll fails, and says why
open my $pw, '>', $imap->dir . '/passwd' or die $!;
print $pw "$user:{PLAIN}changed-" . uniq('') . "::::::\n";
close $pw;
sleep 1.1;                              # a new mtime: Dovecot reads it again
psql("UPDATE jobs SET run_at = now() WHERE kind = 'channel.poll' AND"
     . " status = 'queued' AND payload->>'connectionId' = '$cid'");
ok(wait_until($W, sub { poll_row($cid) =~ /^failed/ }),
   'a refused login fails the poll job') or diag(poll_row($cid));
like(psql("SELECT last_error FROM jobs WHERE kind = 'channel.poll' AND"
          . " payload->>'connectionId' = '$cid' ORDER BY id DESC LIMIT 1"),
     qr/^IMAP: NO .*auth/i, '... with the server\'s reason');
is(setup($cid), 'failed', '... and the connection shows it');

$t->stop;
no_bad_log($t);
$imap->stop;
$smtp->stop;

done_testing;


# ---------------------------------------------------------------- helpers

sub mail {
    my (%o) = @_;
    my $h = "From: $o{from}\nTo: $user\nSubject: $o{subject}\n"
          . "Date: Mon, 1 Jan 2024 10:00:00 +0000\nMessage-ID: $o{id}\n";
    $h .= "In-Reply-To: $o{irt}\n" if $o{irt};
    $h .= "References: $o{refs}\n" if $o{refs};
    if ($o{cte}) {
        $h .= "MIME-Version: 1.0\nContent-Type: text/plain;"
            . " charset=$o{charset}\nContent-Transfer-Encoding: $o{cte}\n";
    }
    return "$h\n$o{body}";
}

sub setup {
    return psql("SELECT setup->>'status' FROM channel_connections"
                . " WHERE id = '$_[0]'");
}

# the poll job: status|attempts|its next run is ahead
sub poll_row {
    return psql("SELECT status || '|' || attempts || '|'"
                . " || (run_at > now() + interval '3 seconds')"
                . " FROM jobs WHERE kind = 'channel.poll'"
                . " AND payload->>'connectionId' = '$_[0]'"
                . " ORDER BY id DESC LIMIT 1");
}

# runs the connection's poll now, and waits until it is done
sub poll_now {
    my ($id) = @_;
    my $before = psql("SELECT now()");
    psql("UPDATE jobs SET run_at = now() WHERE kind = 'channel.poll' AND"
         . " status = 'queued' AND payload->>'connectionId' = '$id'");
    wait_until($W, sub {
        psql("SELECT count(*) FROM jobs WHERE kind = 'channel.poll' AND"
             . " payload->>'connectionId' = '$id' AND status = 'queued'"
             . " AND updated_at > '$before'"
             . " AND run_at > now() + interval '3 seconds'") == 1 })
        or diag('the poll did not run: ' . poll_row($id));
}

sub msg {
    return psql("SELECT status || '|' || coalesce(provider_message_id, '')"
                . " || '|' || coalesce(error::text, '') FROM messages"
                . " WHERE id = '$_[0]'");
}

# the header fields, unfolded, by lowercased name
sub headers {
    my ($raw) = @_;
    my ($head) = split /\r\n\r\n/, $raw, 2;
    $head =~ s/\r\n[ \t]+/ /g;
    my %h;
    for (split /\r\n/, $head) {
        $h{lc $1} //= $2 if /^([^:]+):\s*(.*)$/;
    }
    return %h;
}
