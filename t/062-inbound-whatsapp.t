# Inbound WhatsApp Cloud API webhooks through the shared pipeline
# (src/channels/orbit_whatsapp.c, orbit_pipeline.c, orbit_inbound() of
# 006_inbox.sql): Meta's verification GET, X-Hub-Signature-256 checked on
# the raw bytes before parsing, every message type normalized, contact,
# conversation and message stored in one statement, duplicates stored once,
# statuses applied in any order, tenants routed by phone_number_id, and
# new_message heard over Socket.IO by the tenant's staff and the assignee.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use Orbit::Test;
use Orbit::Node;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $W = Orbit::Nginx::valgrind_enabled() ? 30 : 5;

my $t = orbit_nginx(workers => 2, api_config => 'client_max_body_size 64k;',
                    config => "location /socket.io/ { orbit_socketio; }\n");
$t->start;

# --- two tenants, each with a WhatsApp number
my $ta = make_tenant('waa');
my $tb = make_tenant('wab');
my $pn_a = uniq('1');
my $pn_b = uniq('2');
for ([ $ta, $pn_a ], [ $tb, $pn_b ]) {
    psql("INSERT INTO channel_connections (tenant_id, channel, name,"
         . " account_id) VALUES ('$_->[0]', 'whatsapp', 'Support',"
         . " '$_->[1]')");
}
my $admin_a = make_user($ta, 'ADMIN');
my $agent_a = make_user($ta, 'AGENT');
my $admin_b = make_user($tb, 'ADMIN');

# --- Meta's payloads (PROTOCOLS.md §1)
my $seq = 0;
sub wamid { return 'wamid.' . uniq('HBgM') . ++$seq }

sub change {
    my ($pn, %v) = @_;
    return { field => 'messages',
             value => { messaging_product => 'whatsapp',
                        metadata => { display_phone_number => '15550000000',
                                      phone_number_id => $pn },
                        %v } };
}
sub payload {
    my (@changes) = @_;
    return { object => 'whatsapp_business_account',
             entry => [ { id => 'WABA', changes => \@changes } ] };
}
sub message {
    my ($pn, $wa, $name, $msg) = @_;
    return payload(change($pn,
        contacts => [ { profile => { name => $name }, wa_id => $wa } ],
        messages => [ { from => $wa, id => wamid(),
                        timestamp => '' . int(time), %$msg } ]));
}
sub post {
    my ($body, %o) = @_;
    my $raw = ref $body ? json_of($body) : $body;
    my %h = exists $o{sig} ? (defined $o{sig}
                              ? ('X-Hub-Signature-256' => $o{sig}) : ())
                           : ('X-Hub-Signature-256' => meta_signature($raw));
    return api($t, 'POST', $o{path} // '/api/v1/whatsapp/webhook',
               raw => $raw, headers => \%h);
}
sub count { return psql(shift) + 0 }

# --- the verification GET
my $vt = secret('META_VERIFY_TOKEN');
for my $path ('/api/v1/whatsapp/webhook', '/api/v1/channels/whatsapp/webhook')
{
    my $r = $t->http_get("$path?hub.mode=subscribe&hub.verify_token=$vt"
                         . '&hub.challenge=1158201444');
    is($r->{status}, 200, "GET $path with the verify token: 200");
    is($r->{body}, '1158201444', '... answering the challenge verbatim');
    like($r->{headers}{'content-type'}, qr{^text/plain}, '... as text/plain');
}
my $r = $t->http_get("/api/v1/whatsapp/webhook?hub.mode=subscribe"
                     . "&hub.verify_token=nope&hub.challenge=1");
is($r->{status}, 403, 'a wrong verify token: 403');
$r = $t->http_get("/api/v1/whatsapp/webhook?hub.mode=unsubscribe"
                  . "&hub.verify_token=$vt&hub.challenge=1");
is($r->{status}, 403, 'a mode other than subscribe: 403');
$r = $t->http_get("/api/v1/whatsapp/webhook?hub.mode=subscribe"
                  . "&hub.verify_token=$vt");
is($r->{status}, 400, 'no challenge: 400');
$r = api($t, 'POST', '/api/v1/channels/carrier-pigeon/webhook', raw => '{}');
is($r->{status}, 404, 'a channel there is none of: 404');

# --- sockets: tenant A's admin, its agent, tenant B's admin
my %sock;
for ([ admin_a => $admin_a, $ta, 'ADMIN' ], [ agent_a => $agent_a, $ta, 'AGENT' ],
     [ admin_b => $admin_b, $tb, 'ADMIN' ])
{
    my ($k, $uid, $tid, $role) = @$_;
    $sock{$k} = node_start('sio-client.js',
                           args => [ "http://127.0.0.1:$port/chat" ],
                           env => { TOKEN => user_token($uid, $tid, $role) });
    ok($sock{$k}->wait_for(sub { $_[0]{event} eq 'connect' }, 2 * $W),
       "$k connected");
}

# --- a text message end to end
my $wa = '1555' . substr(uniq(''), -7);
my $p = message($pn_a, $wa, 'Ann Customer',
                { type => 'text', text => { body => 'Hello, my order?' } });
my $wamid = $p->{entry}[0]{changes}[0]{value}{messages}[0]{id};
my $counters0 = psql("SELECT coalesce(sum(messages_in_month), 0) FROM"
                     . " tenant_counters WHERE tenant_id = '$ta'");
my $t0 = time;
$r = post($p);
is($r->{status}, 200, 'a signed text message: 200') or diag($r->{body});
is_deeply($r->{json}, { received => 1, stored => 1, duplicates => 0,
                        statuses => 0, unknownAccounts => 0,
                        unknownMessages => 0 }, '... stored');

my $ev = $sock{admin_a}->wait_for('new_message', $W);
ok($ev, 'new_message reaches the tenant\'s admin');
my $m = $ev ? $ev->{args}[0] : {};
is($m->{content}{text}, 'Hello, my order?', '... the text');
is($m->{direction}, 'inbound', '... inbound');
is($m->{status}, 'received', '... received');
is($m->{providerMessageId}, $wamid, '... the wamid');
is($m->{conversation}{contact}{name}, 'Ann Customer',
   '... its conversation, with the contact\'s profile name');
is($m->{conversation}{contact}{phone}, "+$wa", '... and phone (+wa_id)');
is($m->{conversation}{unreadCount}, 1, '... unread 1');
is($m->{conversation}{status}, 'open', '... open');
ok(!$sock{agent_a}->wait_for('new_message', 0.3),
   'not to an agent it is not assigned to');
ok(!$sock{admin_b}->wait_for('new_message', 0.01),
   'never to another tenant');

my $conv = $m->{conversationId} // '';
is(psql("SELECT count(*) FROM messages WHERE conversation_id = '$conv'"), 1,
   'one message row');
is(psql("SELECT channel || ' ' || (connection_id IS NOT NULL) || ' '"
        . " || unread_count || ' ' || (last_message->>'text')"
        . " FROM conversations WHERE id = '$conv'"),
   'whatsapp true 1 Hello, my order?',
   'the conversation: channel, connection, unread, last message');
is(psql("SELECT count(*) FROM contact_identities i JOIN contacts c"
        . " ON c.id = i.contact_id WHERE i.tenant_id = '$ta'"
        . " AND i.external_id = '$wa' AND c.phone = '+$wa'"), 1,
   'the contact, known by its wa_id from now on');
is(psql("SELECT count(*) FROM jobs WHERE tenant_id = '$ta'"
        . " AND kind = 'flow.trigger' AND payload->>'conversationId'"
        . " = '$conv'"), 1, 'a flow trigger enqueued with it');
is(psql("SELECT sum(messages_in_month) FROM tenant_counters"
        . " WHERE tenant_id = '$ta'") - $counters0, 1,
   'the month\'s message counter');
is(psql("SELECT count(*) FROM domain_events WHERE tenant_id = '$ta'"
        . " AND type = 'contact_created' AND payload->>'source'"
        . " = 'whatsapp'"), 1, 'contact_created, from whatsapp');

# --- the same delivery again: stored once
$r = post($p);
is($r->{status}, 200, 'the same webhook again: 200');
is($r->{json}{duplicates}, 1, '... a duplicate');
is(psql("SELECT count(*) FROM messages WHERE conversation_id = '$conv'"), 1,
   '... still one message');
ok(!$sock{admin_a}->wait_for('new_message', 0.3), '... and no event');

# --- signatures: checked before anything is parsed or stored
my $before = count("SELECT count(*) FROM message_refs");
my $raw = json_of(message($pn_a, $wa, 'Ann', { type => 'text',
                                               text => { body => 'x' } }));
$r = post($raw, sig => undef);
is($r->{status}, 403, 'no X-Hub-Signature-256: 403');
$r = post($raw, sig => meta_signature($raw, 'another-secret'));
is($r->{status}, 403, 'signed with another secret: 403');
$r = post($raw, sig => meta_signature($raw . ' '));
is($r->{status}, 403, 'the signature of other bytes: 403');
$r = post($raw, sig => 'sha1=' . ('0' x 40));
is($r->{status}, 403, 'not sha256=: 403');
$r = post('{"object": nope', sig => '');
is($r->{status}, 403, 'garbage with an empty signature: 403, not 400');
is(count("SELECT count(*) FROM message_refs"), $before, 'nothing stored');

# --- malformed payloads, signed: 400 and nothing stored
for my $bad ([ '{"object": nope', 'not JSON' ],
             [ '[]', 'not an object' ],
             [ json_of({ object => 'page', entry => [] }), 'not WhatsApp' ],
             [ json_of({ object => 'whatsapp_business_account',
                         entry => {} }), 'entry not an array' ],
             [ json_of(payload(change($pn_a, messages => [
                   { from => $wa, timestamp => '1', type => 'text',
                     text => { body => 'no id' } } ]))), 'a message without id' ],
             [ json_of(payload(change($pn_a, messages => [
                   { from => $wa, id => wamid(), timestamp => 'yesterday',
                     type => 'text', text => { body => 'x' } } ]))),
               'a timestamp that is no number' ],
             [ json_of(payload(change($pn_a, messages => [
                   { from => $wa, id => wamid(), timestamp => '1',
                     type => 'text', text => { body => 42 } } ]))),
               'a text body that is no string' ],
             [ json_of(payload(change($pn_a, messages => [
                   { from => $wa, id => wamid(), timestamp => '1',
                     type => 'text', text => { body => 'fine' } },
                   { from => $wa, id => wamid(), timestamp => '1',
                     type => 'location', location => { latitude => 'N' } }
               ]))), 'one good message beside a bad one' ],
             [ json_of(payload({ field => 'messages', value => {
                   messages => [] } })), 'no phone_number_id' ])
{
    $r = post($bad->[0]);
    is($r->{status}, 400, "$bad->[1]: 400")
        or diag($r->{body});
}
is(count("SELECT count(*) FROM message_refs"), $before,
   'nothing of them stored');
$r = post('{"object":"whatsapp_business_account","entry":[],"pad":"'
          . ('x' x 70000) . '"}');
is($r->{status}, 413, 'a body over client_max_body_size: 413');

# --- routing: an unknown number, and two tenants in one webhook
$r = post(message('999' . uniq(''), $wa, 'Ann',
                  { type => 'text', text => { body => 'who?' } }));
is($r->{status}, 404, 'a phone_number_id nobody connected: 404');
my $wa_b = '1666' . substr(uniq(''), -7);
my $two = payload(
    change($pn_a, contacts => [ { profile => { name => 'A2' }, wa_id => $wa } ],
           messages => [ { from => $wa, id => wamid(), timestamp => '1',
                           type => 'text', text => { body => 'to A' } } ]),
    change($pn_b, contacts => [ { profile => { name => 'B1' },
                                  wa_id => $wa_b } ],
           messages => [ { from => $wa_b, id => wamid(), timestamp => '1',
                           type => 'text', text => { body => 'to B' } } ]));
$r = post($two);
is($r->{json}{stored}, 2, 'one webhook, two tenants\' numbers: both stored');
ok($sock{admin_b}->wait_for(sub { $_[0]{event} eq 'new_message'
                                  && ($_[0]{args}[0]{content}{text} // '') eq 'to B' },
                            $W), '... B\'s to tenant B');
ok($sock{admin_a}->wait_for(sub { $_[0]{event} eq 'new_message'
                                  && ($_[0]{args}[0]{content}{text} // '') eq 'to A' },
                            $W), '... A\'s to tenant A');
is(psql("SELECT count(*) FROM conversations WHERE tenant_id = '$ta'"
        . " AND contact_id IN (SELECT contact_id FROM contact_identities"
        . " WHERE external_id = '$wa')"), 1,
   '... in A\'s one conversation with that contact');
is(psql("SELECT count(*) FROM contacts WHERE tenant_id = '$tb'"
        . " AND phone = '+$wa_b'"), 1, '... and B\'s own contact');

# --- every type, normalized
my %types = (
    image => [ { type => 'image', image => { id => 'MEDIA1',
               mime_type => 'image/jpeg', sha256 => 'abc', caption => 'pic' } },
               sub { $_[0]{media}{id} eq 'MEDIA1'
                     && $_[0]{media}{mimeType} eq 'image/jpeg'
                     && $_[0]{caption} eq 'pic' } ],
    document => [ { type => 'document', document => { id => 'D1',
                  mime_type => 'application/pdf', filename => 'a.pdf' } },
                  sub { $_[0]{media}{filename} eq 'a.pdf' } ],
    location => [ { type => 'location', location => { latitude => 52.52,
                  longitude => 13.405, name => 'Office' } },
                  sub { $_[0]{location}{latitude} == 52.52
                        && $_[0]{location}{name} eq 'Office' } ],
    interactive => [ { type => 'interactive', interactive => {
                     type => 'button_reply',
                     button_reply => { id => 'yes', title => 'Yes!' } } },
                     sub { $_[0]{interactive}{type} eq 'button_reply'
                           && $_[0]{interactive}{id} eq 'yes'
                           && $_[0]{text} eq 'Yes!' } ],
    list => [ { type => 'interactive', interactive => { type => 'list_reply',
              list_reply => { id => 'r1', title => 'Row', description => 'd' } } },
              sub { $_[0]{interactive}{description} eq 'd' } ],
    button => [ { type => 'button', button => { payload => 'P', text => 'Stop' } },
                sub { $_[0]{button}{payload} eq 'P' && $_[0]{text} eq 'Stop' } ],
    contacts => [ { type => 'contacts', contacts => [ { name => {
                  formatted_name => 'Bob' } } ] },
                  sub { $_[0]{contacts}[0]{name}{formatted_name} eq 'Bob' } ],
    unsupported => [ { type => 'unsupported', errors => [ { code => 131051,
                     title => 'Message type unknown' } ] },
                     sub { $_[0]{unsupported}{errors}[0]{code} == 131051 } ],
);
for my $k (sort keys %types) {
    my ($msg, $check) = @{ $types{$k} };
    $r = post(message($pn_a, $wa, 'Ann', $msg));
    is($r->{json}{stored}, 1, "$k: stored");
    my $row = psql("SELECT type || ' ' || content::text FROM messages"
                   . " WHERE conversation_id = '$conv'"
                   . " ORDER BY created_at DESC, id DESC LIMIT 1");
    my ($type, $content) = split / /, $row, 2;
    is($type, $msg->{type}, "... as type $msg->{type}");
    ok(eval { $check->(JSON::PP::decode_json($content)) }, '... its content')
        or diag($content);
}

# --- latency, once the statement is planned in the backends
for my $i (1 .. 3) {
    $t0 = time;
    post(message($pn_a, $wa, 'Ann', { type => 'text',
                                      text => { body => "fast $i" } }));
    $ev = $sock{admin_a}->wait_for(sub {
        $_[0]{event} eq 'new_message'
        && ($_[0]{args}[0]{content}{text} // "") eq "fast $i" }, $W);
    push @{ $sock{lat} }, $ev ? $ev->{at} / 1000 - $t0 : 99;
}
my ($best) = sort { $a <=> $b } @{ $sock{lat} };
cmp_ok($best, '<', 0.1, 'new_message within 100 ms of the webhook')
    or diag("latencies: @{ $sock{lat} }");
delete $sock{lat};

# --- replies and reactions point at the message they are about
$r = post(message($pn_a, $wa, 'Ann', { type => 'text', text => { body => 're' },
                                       context => { from => $wa,
                                                    id => $wamid } }));
is(psql("SELECT reply_to_id FROM messages WHERE conversation_id = '$conv'"
        . " AND content->>'text' = 're'"),
   psql("SELECT id FROM messages WHERE provider_message_id = '$wamid'"),
   'a reply (context.id) points at the message replied to');
$r = post(message($pn_a, $wa, 'Ann', { type => 'reaction', reaction => {
    message_id => $wamid, emoji => "\xf0\x9f\x91\x8d" } }));
is(psql("SELECT reply_to_id FROM messages WHERE conversation_id = '$conv'"
        . " AND type = 'reaction'"),
   psql("SELECT id FROM messages WHERE provider_message_id = '$wamid'"),
   'a reaction too');

# --- statuses of an outbound message, in any order
my $out = wamid();
my $mid = psql("WITH m AS (INSERT INTO messages (tenant_id, conversation_id,"
               . " direction, type, content, status, provider_message_id)"
               . " VALUES ('$ta', '$conv', 'outbound', 'text',"
               . " '{\"text\":\"Sure!\"}', 'queued', '$out') RETURNING *),"
               . " r AS (INSERT INTO message_refs SELECT c.id,"
               . " '$out', m.tenant_id, m.id, m.created_at"
               . " FROM m, channel_connections c WHERE c.account_id = '$pn_a')"
               . " SELECT id FROM m");
psql("UPDATE conversations SET assignee_id = '$agent_a' WHERE id = '$conv'");
sub status {
    my ($id, $st, %o) = @_;
    return post(payload(change($pn_a, statuses => [ {
        id => $id, status => $st, timestamp => '' . ($o{ts} // int time),
        recipient_id => $wa, %{ $o{extra} // {} } } ])));
}
$r = status($out, 'sent', ts => 1000);
is($r->{json}{statuses}, 1, 'sent: applied');
$ev = $sock{agent_a}->wait_for('message_status', $W);
is($ev && $ev->{args}[0]{status}, 'sent',
   'message_status reaches the assignee now');
status($out, 'read', ts => 1002);
status($out, 'delivered', ts => 1001);
is(psql("SELECT status || ' ' || (statuses->>'sent') || ' '"
        . " || (statuses->>'delivered') || ' ' || (statuses->>'read')"
        . " FROM messages WHERE id = '$mid'"), 'read 1000 1001 1002',
   'delivered after read: stays read, every moment kept');
status($out, 'failed', extra => { errors => [ { code => 131047,
    title => 'Re-engagement message', error_data => { details => 'late' } } ] });
is(psql("SELECT status FROM messages WHERE id = '$mid'"), 'read',
   'failed after read changes nothing');
$r = status(wamid(), 'delivered');
is_deeply([ $r->{status}, $r->{json}{unknownMessages} ], [ 200, 1 ],
          'a status of a message we never sent: 200, counted');

my $out2 = wamid();
my $mid2 = psql("WITH m AS (INSERT INTO messages (tenant_id, conversation_id,"
                . " direction, type, content, status, provider_message_id)"
                . " VALUES ('$ta', '$conv', 'outbound', 'text',"
                . " '{\"text\":\"Hi\"}', 'sent', '$out2') RETURNING *),"
                . " r AS (INSERT INTO message_refs SELECT c.id, '$out2',"
                . " m.tenant_id, m.id, m.created_at"
                . " FROM m, channel_connections c WHERE c.account_id = '$pn_a')"
                . " SELECT id FROM m");
status($out2, 'failed', extra => { errors => [ { code => 131047,
    title => 'Re-engagement message', message => 'More than 24 hours',
    error_data => { details => 'Message failed to send because more than'
                               . ' 24 hours have passed' } } ] });
is(psql("SELECT status || ' ' || (error->>'code') || ' ' || (error->>'title')"
        . " FROM messages WHERE id = '$mid2'"),
   'failed 131047 Re-engagement message', 'failed: with the provider\'s error');
status($out2, 'deleted');
is(psql("SELECT status FROM messages WHERE id = '$mid2'"), 'failed',
   'a status we do not track is ignored');

# --- the assignee hears new messages of their conversation; resolved reopens
psql("UPDATE conversations SET status = 'resolved' WHERE id = '$conv'");
post(message($pn_a, $wa, 'Ann', { type => 'text', text => { body => 'again' } }));
ok($sock{agent_a}->wait_for(sub { $_[0]{event} eq 'new_message'
                                  && ($_[0]{args}[0]{content}{text} // '') eq 'again' },
                            $W), 'new_message reaches the assignee');
is(psql("SELECT status FROM conversations WHERE id = '$conv'"), 'assigned',
   'a resolved conversation reopens (assigned: it has an assignee)');

# --- a contact the CRM already had, by phone
my $wa_c = '1777' . substr(uniq(''), -7);
my $cid = psql("INSERT INTO contacts (tenant_id, phone, name) VALUES"
               . " ('$ta', '+$wa_c', 'Known') RETURNING id");
psql("INSERT INTO tenant_counters AS t (tenant_id, contacts)"
     . " VALUES ('$ta', 1) ON CONFLICT (tenant_id, shard)"
     . " DO UPDATE SET contacts = t.contacts + 1");
post(message($pn_a, $wa_c, 'Profile Name', { type => 'text',
                                             text => { body => 'hi' } }));
is(psql("SELECT c.contact_id FROM conversations c JOIN messages m"
        . " ON m.conversation_id = c.id WHERE m.content->>'text' = 'hi'"
        . " AND c.tenant_id = '$ta'"), $cid,
   'a contact already in the CRM (same phone) gets the conversation');

# --- concurrent deliveries of one webhook: stored once
my $dup = message($pn_a, $wa, 'Ann', { type => 'text',
                                       text => { body => 'race' } });
my $dup_raw = json_of($dup);
my @pids;
for (1 .. 6) {
    my $pid = fork;
    if (!$pid) {
        post($dup_raw);
        exit 0;
    }
    push @pids, $pid;
}
waitpid $_, 0 for @pids;
is(psql("SELECT count(*) FROM messages WHERE tenant_id = '$ta'"
        . " AND content->>'text' = 'race'"), 1,
   'six concurrent deliveries of one message: stored once');

# --- a burst: webhooks that wait share a statement (group commit), and
# each is answered for its own items
my @burst = map { message($pn_a, $wa, 'Ann', { type => 'text',
                                               text => { body => "burst $_" } }) }
            1 .. 40;
my $ndone = 0;
@pids = ();
for my $b (@burst) {
    my $pid = fork;
    if (!$pid) {
        my $r = post($b);
        exit($r->{status} == 200 && $r->{json}{stored} == 1
             && $r->{json}{received} == 1 ? 0 : 1);
    }
    push @pids, $pid;
}
for (@pids) { waitpid $_, 0; $ndone++ if $? == 0 }
is($ndone, 40, 'a burst of 40 webhooks: each answered 200, stored 1');
is(psql("SELECT count(*) FROM messages WHERE tenant_id = '$ta'"
        . " AND content->>'text' LIKE 'burst %'"), 40, '... all 40 stored');

# a client that does not wait for its answer: stored all the same
my $gone = json_of(message($pn_a, $wa, 'Ann', { type => 'text',
                                                text => { body => 'gone' } }));
my $sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die $!;
print $sock "POST /api/v1/whatsapp/webhook HTTP/1.1\r\nHost: x\r\n"
    . "Content-Type: application/json\r\nX-Hub-Signature-256: "
    . meta_signature($gone) . "\r\nContent-Length: " . length($gone)
    . "\r\n\r\n$gone";
close $sock;
ok(wait_until(5, sub { psql("SELECT count(*) FROM messages WHERE tenant_id"
                            . " = '$ta' AND content->>'text' = 'gone'") == 1 }),
   'a webhook whose client left before the answer is stored');

# --- ids in time order (015): new rows go to the right of their b-trees
my @ids = split /\n/, psql("SELECT id FROM messages WHERE tenant_id = '$ta'"
                           . " ORDER BY created_at, id");
is(scalar(grep { substr($_, 14, 1) ne '7' } @ids), 0,
   'the messages\' ids are UUID version 7');
my $first = psql('SELECT orbit_uuid7()');
sleep 0.01;
ok($first lt psql('SELECT orbit_uuid7()'),
   '... which grow with time (an id made later sorts after)');
is(psql("SELECT substr(k.id::text, 15, 1) FROM contacts k"
        . " WHERE k.tenant_id = '$ta' ORDER BY created_at DESC LIMIT 1"), '7',
   '... and the contacts\' too');

$_->stop for values %sock;
$t->stop;
no_bad_log($t);

done_testing;
