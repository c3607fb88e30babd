# The inbox over REST (src/api/orbit_api_conversations.c, orbit_api_messages.c):
# conversations listed newest activity first with filters and a keyset
# cursor, assignment and status, tags, mark read with its receipt job and
# counters, a conversation's messages, and sending — stored with its
# delivery job in one statement, private notes that never leave; agents
# see only what is assigned to them, API keys need their scopes, another
# tenant's ids are not found.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use Orbit::Test;
use Orbit::Node;

my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $W = Orbit::Nginx::valgrind_enabled() ? 30 : 5;

my $t = orbit_nginx(config => "location /socket.io/ { orbit_socketio; }\n");
$t->start;

my $ta = make_tenant('inbox');
my $tb = make_tenant('inboxb');
my $pn = uniq('5');
my $pn_b = uniq('6');
psql("INSERT INTO channel_connections (tenant_id, channel, name, account_id)"
     . " VALUES ('$ta', 'whatsapp', 'Support', '$pn'),"
     . " ('$tb', 'whatsapp', 'B', '$pn_b')");
my $admin = make_user($ta, 'ADMIN');
my $manager = make_user($ta, 'MANAGER');
my $agent = make_user($ta, 'AGENT');
my $agent2 = make_user($ta, 'AGENT');
my $admin_b = make_user($tb, 'ADMIN');
my %tok = (admin => user_token($admin, $ta, 'ADMIN'),
           manager => user_token($manager, $ta, 'MANAGER'),
           agent => user_token($agent, $ta, 'AGENT'),
           agent2 => user_token($agent2, $ta, 'AGENT'),
           admin_b => user_token($admin_b, $tb, 'ADMIN'));

# customers write in through the webhook, as they do
my $n = 0;
sub inbound {
    my ($wa, $text, %o) = @_;
    my $body = json_of({ object => 'whatsapp_business_account', entry => [ {
        id => 'W', changes => [ { field => 'messages', value => {
            messaging_product => 'whatsapp',
            metadata => { phone_number_id => $o{pn} // $pn },
            contacts => [ { profile => { name => "C$wa" }, wa_id => $wa } ],
            messages => [ { from => $wa, id => 'wamid.' . uniq('i') . ++$n,
                            timestamp => '' . int(time), type => 'text',
                            text => { body => $text } } ] } } ] } ] });
    my $r = api($t, 'POST', '/api/v1/whatsapp/webhook', raw => $body,
                headers => { 'X-Hub-Signature-256' => meta_signature($body) });
    die "inbound: $r->{status} $r->{body}" unless $r->{status} == 200;
}
sub get { my ($who, $path) = @_; return api($t, 'GET', $path, token => $tok{$who}) }

my @wa = map { '1444' . substr(uniq(''), -6) . $_ } 0 .. 4;
inbound($_, "hello from $_") for @wa;
inbound($wa[0], 'again from 0');      # 0 is now the newest activity
inbound('1999' . substr(uniq(''), -7), 'to B', pn => $pn_b);

# --- the list
my $r = get(admin => '/api/v1/conversations');
is($r->{status}, 200, 'GET /conversations: 200');
my @c = @{ $r->{json}{data} // [] };
is(scalar @c, 5, '... the tenant\'s five, none of B\'s');
is($c[0]{contact}{phone}, "+$wa[0]", '... newest activity first');
is($c[0]{unreadCount}, 2, '... with unread counts');
is($c[0]{lastMessage}{text}, 'again from 0', '... and the last message');
my %conv = map { $_->{contact}{phone} => $_->{id} } @c;
my $c0 = $conv{"+$wa[0]"};

my @seen;
my $cursor;
do {
    $r = get(admin => '/api/v1/conversations?limit=2'
                      . ($cursor ? "&cursor=$cursor" : ''));
    push @seen, map { $_->{id} } @{ $r->{json}{data} };
    $cursor = $r->{json}{nextCursor};
} while ($cursor && @seen < 20);
is_deeply(\@seen, [ map { $_->{id} } @c ], 'walked two by two: the same order');
is(get(admin => '/api/v1/conversations?cursor=nope')->{status}, 400,
   'a forged cursor: 400');
is(get(admin => '/api/v1/conversations?status=closed')->{status}, 400,
   'an unknown status: 400');
is(get(admin => '/api/v1/conversations?channel=fax')->{status}, 400,
   'an unknown channel: 400');
is(get(admin => '/api/v1/conversations?assigneeId=x')->{status}, 400,
   'assigneeId neither a UUID, me nor none: 400');
is(get(admin => '/api/v1/conversations?unread=maybe')->{status}, 400,
   'unread neither true nor false: 400');
is(scalar @{ get(admin => '/api/v1/conversations?channel=telegram')
             ->{json}{data} }, 0, 'channel=telegram: none');

# --- the agent sees only theirs
is(scalar @{ get(agent => '/api/v1/conversations')->{json}{data} }, 0,
   'an agent with no assignment sees none');
is(get(agent => "/api/v1/conversations/$c0")->{status}, 404,
   '... and a conversation not theirs is not found');

# --- assignment
$r = api($t, 'PATCH', "/api/v1/conversations/$c0", token => $tok{agent},
         body => { assigneeId => $agent });
is($r->{status}, 403, 'an agent may not assign');

my $sio = node_start('sio-client.js', args => [ "http://127.0.0.1:$port/chat" ],
                     env => { TOKEN => $tok{agent} });
ok($sio->wait_for(sub { $_[0]{event} eq 'connect' }, 2 * $W),
   'the agent\'s socket connects');
my $sio2 = node_start('sio-client.js', args => [ "http://127.0.0.1:$port/chat" ],
                      env => { TOKEN => $tok{agent2} });
ok($sio2->wait_for(sub { $_[0]{event} eq 'connect' }, 2 * $W),
   'another agent\'s too');

$r = api($t, 'PATCH', "/api/v1/conversations/$c0", token => $tok{manager},
         body => { assigneeId => $agent });
is($r->{status}, 200, 'a manager assigns it to the agent');
is_deeply([ $r->{json}{assigneeId}, $r->{json}{status} ], [ $agent, 'assigned' ],
          '... assigned to them, status assigned');
my $ev = $sio->wait_for('notification', $W);
is_deeply([ $ev && $ev->{args}[0]{type}, $ev && $ev->{args}[0]{conversation}{id} ],
          [ 'conversation_updated', $c0 ], 'the agent hears of it');
ok(!$sio2->wait_for('notification', 0.3), '... the other agent does not');

is(scalar @{ get(agent => '/api/v1/conversations')->{json}{data} }, 1,
   'the agent now lists it');
is(get(agent => "/api/v1/conversations/$c0")->{json}{id}, $c0,
   '... and gets it');
is(scalar @{ get(admin => '/api/v1/conversations?assigneeId=me')
             ->{json}{data} }, 0, 'assigneeId=me for the admin: none');
is(scalar @{ get(admin => "/api/v1/conversations?assigneeId=$agent")
             ->{json}{data} }, 1, 'assigneeId=<agent>: one');
is(scalar @{ get(admin => '/api/v1/conversations?assigneeId=none')
             ->{json}{data} }, 4, 'assigneeId=none: four');
is(scalar @{ get(admin => '/api/v1/conversations?status=assigned')
             ->{json}{data} }, 1, 'status=assigned: one');

for my $bad ([ { assigneeId => $admin_b }, 400, 'a user of another tenant' ],
             [ { assigneeId => 'nope' }, 400, 'not a UUID' ],
             [ { status => 'closed' }, 400, 'an unknown status' ],
             [ { tags => 'vip' }, 400, 'tags not an array' ],
             [ { tags => [ 'x' x 51 ] }, 400, 'a tag of 51 characters' ],
             [ { color => 'red' }, 400, 'an unknown field' ],
             [ {}, 400, 'nothing to change' ])
{
    $r = api($t, 'PATCH', "/api/v1/conversations/$c0", token => $tok{admin},
             body => $bad->[0]);
    is($r->{status}, $bad->[1], "PATCH with $bad->[2]: $bad->[1]")
        or diag($r->{body});
}
$r = api($t, 'PATCH', "/api/v1/conversations/$c0", token => $tok{admin},
         raw => '{"status": ');
is($r->{status}, 400, 'malformed JSON: 400');

$r = api($t, 'PATCH', "/api/v1/conversations/$c0", token => $tok{agent},
         body => { status => 'pending', tags => [ 'vip', 'billing', 'vip' ] });
is_deeply([ $r->{json}{status}, [ sort @{ $r->{json}{tags} // [] } ] ],
          [ 'pending', [ 'billing', 'vip' ] ],
          'the agent sets status and tags of their own (tags made unique)');
is(scalar @{ get(admin => '/api/v1/conversations?tag=vip')->{json}{data} }, 1,
   '?tag=vip finds it');

# --- unread and mark read
is(get(admin => '/api/v1/conversations/unread')->{json}{conversations}, 5,
   'five conversations unread for the staff (the counter)');
is(get(agent => '/api/v1/conversations/unread')->{json}{conversations}, 1,
   'one for the agent (theirs)');
is(scalar @{ get(admin => '/api/v1/conversations?unread=true')
             ->{json}{data} }, 5, '?unread=true: five');
$r = api($t, 'POST', "/api/v1/conversations/$c0/read", token => $tok{agent});
is_deeply([ $r->{status}, $r->{json}{unreadCount} ], [ 200, 0 ],
          'the agent marks it read');
is(get(admin => '/api/v1/conversations/unread')->{json}{conversations}, 4,
   '... four unread left');
is(psql("SELECT count(*) FROM jobs WHERE kind = 'message.read'"
        . " AND payload->>'conversationId' = '$c0'"), 1,
   '... and a read receipt queued for the channel');
$r = api($t, 'POST', "/api/v1/conversations/$c0/read", token => $tok{agent});
is($r->{status}, 200, 'read again: 200');
is(get(admin => '/api/v1/conversations/unread')->{json}{conversations}, 4,
   '... counted once');
is(psql("SELECT count(*) FROM jobs WHERE kind = 'message.read'"
        . " AND payload->>'conversationId' = '$c0'"), 1,
   '... and no second receipt');
inbound($wa[0], 'one more');
is(get(admin => '/api/v1/conversations/unread')->{json}{conversations}, 5,
   'a new message: unread again');
is(get(admin => "/api/v1/conversations/$c0")->{json}{status}, 'assigned',
   '... and pending went back to assigned (the customer answered)');

# --- messages of a conversation
$r = get(agent => "/api/v1/conversations/$c0/messages");
is($r->{status}, 200, 'GET /conversations/:id/messages: 200');
is_deeply([ map { $_->{content}{text} } @{ $r->{json}{data} } ],
          [ 'one more', 'again from 0', "hello from $wa[0]" ],
          '... newest first');
$r = get(agent => "/api/v1/conversations/$c0/messages?limit=1");
my $next = $r->{json}{nextCursor};
$r = get(agent => "/api/v1/conversations/$c0/messages?limit=1&cursor=$next");
is($r->{json}{data}[0]{content}{text}, 'again from 0', '... a cursor pages');
is(get(agent2 => "/api/v1/conversations/$c0/messages")->{status}, 404,
   'another agent: not found');

# --- sending
$r = api($t, 'POST', '/api/v1/messages', token => $tok{agent},
         body => { conversationId => $c0, type => 'text',
                   content => 'Your order ships today.' });
is($r->{status}, 201, 'POST /messages: 201');
my $sent = $r->{json} // {};
is_deeply([ @$sent{qw(direction status type)}, $sent->{content}{text},
            $sent->{senderId} ],
          [ 'outbound', 'queued', 'text', 'Your order ships today.', $agent ],
          '... outbound, queued, by the agent');
is(psql("SELECT count(*) FROM jobs WHERE kind = 'message.send'"
        . " AND payload->>'messageId' = '$sent->{id}'"), 1,
   '... its delivery job committed with it');
$ev = $sio->wait_for(sub { $_[0]{event} eq 'new_message'
                           && $_[0]{args}[0]{id} eq ($sent->{id} // '') }, $W);
ok($ev, 'new_message of it reaches the assignee');
is($ev && $ev->{args}[0]{conversation}{lastMessage}{text},
   'Your order ships today.', '... with the conversation as it is now');

$r = api($t, 'POST', '/api/v1/messages', token => $tok{agent},
         body => { conversationId => $c0, content => 'internal: VIP',
                   private => JSON::PP::true, replyToId => $sent->{id} });
is_deeply([ $r->{status}, $r->{json}{status}, $r->{json}{private},
            $r->{json}{replyToId} ], [ 201, 'sent', JSON::PP::true, $sent->{id} ],
          'a private note: stored sent, replying to the message');
is(psql("SELECT count(*) FROM jobs WHERE payload->>'messageId'"
        . " = '$r->{json}{id}'"), 0, '... with no delivery job');
is(get(agent => "/api/v1/conversations/$c0")->{json}{lastMessage}{text},
   'Your order ships today.', '... and the inbox row still shows the last '
   . 'message the customer can see');

for my $ok ([ image => { media => { url => 'https://cdn.example/a.png',
                                    mimeType => 'image/png' },
                         caption => 'see' } ],
            [ document => { media => { url => 'https://cdn.example/a.pdf',
                                       filename => 'a.pdf' } } ],
            [ template => { template => { name => 'order_update',
                                          language => { code => 'en_US' },
                                          components => [] } } ])
{
    $r = api($t, 'POST', '/api/v1/messages', token => $tok{admin},
             body => { conversationId => $c0, type => $ok->[0],
                       content => $ok->[1] });
    is($r->{status}, 201, "a $ok->[0] message: 201") or diag($r->{body});
}

for my $bad ([ { content => 'x' }, 400, 'no conversationId' ],
             [ { conversationId => $c0 }, 400, 'no content' ],
             [ { conversationId => $c0, content => '' }, 400, 'empty text' ],
             [ { conversationId => $c0, content => 'x' x 4097 }, 400,
               'text over 4096 characters' ],
             [ { conversationId => $c0, content => 42 }, 400,
               'content a number' ],
             [ { conversationId => $c0, type => 'fax', content => 'x' }, 400,
               'an unknown type' ],
             [ { conversationId => $c0, type => 'image',
                 content => { media => { url => 'ftp://x/y' } } }, 400,
               'media by ftp' ],
             [ { conversationId => $c0, type => 'image',
                 content => { media => { url => 'https://x/y', size => 1 } } },
               400, 'an unknown media field' ],
             [ { conversationId => $c0, type => 'template',
                 content => { template => { name => 'x' } } }, 400,
               'a template without language' ],
             [ { conversationId => $c0, type => 'image', private => JSON::PP::true,
                 content => { media => { url => 'https://x/y' } } }, 400,
               'a private image' ],
             [ { conversationId => $c0, content => 'x', extra => 1 }, 400,
               'an unknown field' ],
             [ { conversationId => $c0, content => 'x',
                 replyToId => '00000000-0000-0000-0000-000000000000' }, 400,
               'a reply to a message not in it' ],
             [ { conversationId => 'nope', content => 'x' }, 400,
               'conversationId not a UUID' ])
{
    $r = api($t, 'POST', '/api/v1/messages', token => $tok{admin},
             body => $bad->[0]);
    is($r->{status}, $bad->[1], "send with $bad->[2]: $bad->[1]")
        or diag($r->{body});
}
our $c_b = psql("SELECT id FROM conversations WHERE tenant_id = '$tb' LIMIT 1");
$r = api($t, 'POST', '/api/v1/messages', token => $tok{admin},
         body => { conversationId => $c_b, content => 'hi' });
is($r->{status}, 404, 'sending into another tenant\'s conversation: 404');
$r = api($t, 'POST', '/api/v1/messages', token => $tok{agent2},
         body => { conversationId => $c0, content => 'hi' });
is($r->{status}, 404, 'an agent sending into another\'s: 404');
psql("UPDATE conversations SET connection_id = NULL WHERE id = '$conv{\"+$wa[4]\"}'");
$r = api($t, 'POST', '/api/v1/messages', token => $tok{admin},
         body => { conversationId => $conv{"+$wa[4]"}, content => 'hi' });
is($r->{status}, 409, 'a conversation whose connection is gone: 409');
is($r->{json}{message}, 'This conversation\'s channel is not connected any'
   . ' more: nothing can be sent on it', '... saying why');

# --- send_message over the socket: the same path
$sio->write_json({ emit => 'send_message', ack => JSON::PP::true,
                   args => [ { conversationId => $c0,
                               content => 'Sent from the socket' } ] });
my $sack = $sio->wait_for(sub { $_[0]{event} eq 'ack'
                                && $_[0]{of} eq 'send_message' }, $W);
my $sm = $sack ? $sack->{args}[0] : {};
is_deeply([ $sm->{ok}, $sm->{message}{status}, $sm->{message}{senderId},
            $sm->{message}{content}{text} ],
          [ JSON::PP::true, 'queued', $agent, 'Sent from the socket' ],
          'send_message: stored, queued, acknowledged with the message');
is(psql("SELECT count(*) FROM jobs WHERE kind = 'message.send'"
        . " AND payload->>'messageId' = '$sm->{message}{id}'"), 1,
   '... with its delivery job');
for my $bad ([ { conversationId => $c0 }, 'content should not be empty' ],
             [ { conversationId => $c_b // $c0, content => 'x',
                 type => 'fax' }, 'type must be one of' ],
             [ 'just text', 'the message must be a JSON object' ])
{
    $sio->write_json({ emit => 'send_message', ack => JSON::PP::true,
                       args => [ $bad->[0] ] });
    $sack = $sio->wait_for(sub { $_[0]{event} eq 'ack'
                                 && $_[0]{of} eq 'send_message' }, $W);
    like($sack && $sack->{args}[0]{error} // '', qr/\Q$bad->[1]\E/,
         "send_message refused: $bad->[1]");
}
$sio2->write_json({ emit => 'send_message', ack => JSON::PP::true,
                    args => [ { conversationId => $c0, content => 'x' } ] });
$sack = $sio2->wait_for(sub { $_[0]{event} eq 'ack'
                              && $_[0]{of} eq 'send_message' }, $W);
is($sack && $sack->{args}[0]{error}, 'Conversation not found',
   'send_message into another agent\'s conversation: not found');

# --- other tenants' ids, everywhere
for my $req ([ GET => "/api/v1/conversations/$c_b" ],
             [ GET => "/api/v1/conversations/$c_b/messages" ],
             [ POST => "/api/v1/conversations/$c_b/read" ],
             [ PATCH => "/api/v1/conversations/$c_b", { status => 'resolved' } ])
{
    $r = api($t, $req->[0], $req->[1], token => $tok{admin},
             $req->[2] ? (body => $req->[2]) : ());
    is($r->{status}, 404, "$req->[0] $req->[1] (tenant B's) as A: 404");
}
is(psql("SELECT status FROM conversations WHERE id = '$c_b'"), 'open',
   '... and B\'s conversation untouched');

# --- API keys: their scopes
my $key = api($t, 'POST', '/api/v1/api-keys', token => $tok{admin},
              body => { name => 'zap', scopes => [ 'conversations:read' ] })
          ->{json}{key};
my $kh = { 'X-Api-Key' => $key };
is(api($t, 'GET', '/api/v1/conversations', headers => $kh)->{status}, 200,
   'a key with conversations:read lists');
is(api($t, 'GET', "/api/v1/conversations/$c0/messages", headers => $kh)
   ->{status}, 403, '... but may not read messages');
is(api($t, 'POST', '/api/v1/messages', headers => $kh,
       body => { conversationId => $c0, content => 'x' })->{status}, 403,
   '... nor send');
is(api($t, 'PATCH', "/api/v1/conversations/$c0", headers => $kh,
       body => { status => 'open' })->{status}, 403, '... nor change');
my $skey = api($t, 'POST', '/api/v1/api-keys', token => $tok{admin},
               body => { name => 'shop', scopes => [ 'messages:send' ] })
           ->{json}{key};
$r = api($t, 'POST', '/api/v1/messages', headers => { 'X-Api-Key' => $skey },
         body => { conversationId => $c0, content => 'Order #1 shipped' });
is_deeply([ $r->{status}, $r->{json}{senderId} ], [ 201, undef ],
          'a key with messages:send sends (no sender user)');

# --- unassign
$r = api($t, 'PATCH', "/api/v1/conversations/$c0", token => $tok{admin},
         body => { assigneeId => undef });
is_deeply([ $r->{json}{assigneeId}, $r->{json}{status} ], [ undef, 'open' ],
          'unassigned: open again');
$ev = $sio->wait_for(sub { $_[0]{event} eq 'notification'
                           && !defined $_[0]{args}[0]{conversation}{assigneeId} },
                     $W);
ok($ev, 'the former assignee hears it was taken away');

$sio->stop;
$sio2->stop;
$t->stop;
no_bad_log($t);

done_testing;
