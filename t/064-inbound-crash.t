# Nothing acknowledged is lost (ARCHITECTURE rule 4) on the inbound path:
# the workers SIGKILLed in the middle of a burst of WhatsApp webhooks, every
# webhook that got its 200 is stored, and stored once; the provider then
# redelivers everything (as Meta does for what it did not see acknowledged)
# and each message is still stored exactly once.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use File::Temp ();
use Orbit::Test;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;

my $t = orbit_nginx(workers => 2, pool => 2);
$t->start;
ok(wait_until(5, sub { $t->worker_pids == 2 }), 'two workers');

my $tid = make_tenant('crash');
my $pn = uniq('7');
psql("INSERT INTO channel_connections (tenant_id, channel, name, account_id)"
     . " VALUES ('$tid', 'whatsapp', 'Support', '$pn')");

my $N = 1600;
my @bodies = map {
    my $wa = sprintf '1333%07d', $_ % 50;
    json_of({ object => 'whatsapp_business_account', entry => [ {
        id => 'W', changes => [ { field => 'messages', value => {
            messaging_product => 'whatsapp',
            metadata => { phone_number_id => $pn },
            contacts => [ { profile => { name => "C$wa" }, wa_id => $wa } ],
            messages => [ { from => $wa, id => "wamid.crash.$$.$_",
                            timestamp => '' . int(time), type => 'text',
                            text => { body => "m$_" } } ] } } ] } ] })
} 1 .. $N;

# one raw HTTP exchange: the status, or 0 when the connection broke
sub deliver {
    my ($body) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 10)
        or return 0;
    print $s "POST /api/v1/whatsapp/webhook HTTP/1.1\r\nHost: x\r\n"
        . "Connection: close\r\nContent-Type: application/json\r\n"
        . 'X-Hub-Signature-256: ' . meta_signature($body) . "\r\n"
        . 'Content-Length: ' . length($body) . "\r\n\r\n" . $body;
    local $/;
    my $answer = <$s> // '';
    return $answer =~ m{^HTTP/1\.1 (\d+)} ? $1 : 0;
}

# eight senders, each writing "index status" lines
my $dir = File::Temp::tempdir(CLEANUP => 1);
my @pids;
for my $k (0 .. 7) {
    my $pid = fork;
    if (!$pid) {
        open my $out, '>', "$dir/$k" or die $!;
        for (my $i = $k; $i < $N; $i += 8) {
            printf {$out} "%d %d\n", $i, deliver($bodies[$i]);
        }
        close $out;
        exit 0;
    }
    push @pids, $pid;
}

# the workers die in the middle of it
ok(wait_until(20, sub { psql("SELECT count(*) FROM messages WHERE tenant_id"
                             . " = '$tid'") >= 200 }),
   'the burst is under way');
kill 'KILL', $t->worker_pids;     # both: whatever they held is cut off
waitpid $_, 0 for @pids;

my %status;
for my $k (0 .. 7) {
    open my $in, '<', "$dir/$k" or die $!;
    while (<$in>) { my ($i, $s) = split; $status{$i} = $s }
}
is(scalar keys %status, $N, 'every webhook was tried');
my @acked = grep { $status{$_} == 200 } keys %status;
my @other = grep { $status{$_} != 200 } keys %status;
cmp_ok(scalar @acked, '>', $N / 4, scalar(@acked) . ' acknowledged');
cmp_ok(scalar @other, '>', 0, scalar(@other) . ' cut off by the kill (no'
       . ' answer, or 5xx): else the test proves little');

sub stored {
    my %n = map { split /\|/ } split /\n/,
        psql("SELECT provider_message_id, count(*) FROM messages"
             . " WHERE tenant_id = '$tid' GROUP BY 1");
    return \%n;
}
my $n = stored();
my @lost = grep { !$n->{"wamid.crash.$$." . ($_ + 1)} } @acked;
is(scalar @lost, 0, 'every acknowledged webhook is stored')
    or diag("lost: @lost[0 .. ($#lost < 9 ? $#lost : 9)]");
is(scalar(grep { $_ > 1 } values %$n), 0, '... none twice');

# Meta redelivers what it has no 200 for, and (to be sure) all the rest
ok(wait_until(10, sub { $t->worker_pids == 2 }), 'the master replaced the '
   . 'workers');
my $bad = 0;
for my $i (0 .. $N - 1) {
    $bad++ unless deliver($bodies[$i]) == 200;
}
is($bad, 0, 'every redelivery answered 200');
$n = stored();
is(scalar keys %$n, $N, "all $N messages stored");
is(scalar(grep { $_ != 1 } values %$n), 0, '... each exactly once');
is(psql("SELECT sum(unread_count) FROM conversations WHERE tenant_id"
        . " = '$tid'"), $N, 'the unread counts add up to the messages');
is(psql("SELECT sum(messages_in_month) FROM tenant_counters WHERE tenant_id"
        . " = '$tid'"), $N, '... and so does the month\'s counter');

$t->stop;
no_bad_log($t, allow => qr/exited on signal 9/);

done_testing;
