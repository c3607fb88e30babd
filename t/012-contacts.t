# /api/v1/contacts: create/read/update/delete, keyset pages, search and tag
# filters, the counter behind the total, tags and their domain events, bad
# input, tenant isolation, CSV import (per-row report, fatal refusals) and
# export (formula guard, round trip).

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time);
use Orbit::Nginx qw(build_request);
use Orbit::Test;

my $t = orbit_nginx(workers => 2, pool => 4,
                    api_config => 'client_max_body_size 1m;');
$t->start;

my ($root_email, $root_pw) = make_superadmin();
my $root = login($t, $root_email, $root_pw);

# a registered, approved tenant and its admin's token
sub tenant {
    my ($name) = @_;
    my $slug = uniq($name);
    my $email = "$slug\@$name.test";
    my $r = api($t, 'POST', '/api/v1/auth/register', body => {
        tenantName => "T $slug", slug => $slug, name => 'Admin',
        email => $email, password => 'correct horse battery' });
    die "register: $r->{status} $r->{body}" unless $r->{status} == 201;
    my $id = $r->{json}{tenant}{id};
    $r = api($t, 'PATCH', "/api/v1/tenants/$id",
             body => { status => 'active' }, token => $root->{accessToken});
    die "approve: $r->{status}" unless $r->{status} == 200;
    return (login($t, $email, 'correct horse battery')->{accessToken}, $id);
}

my $n = 0;
sub phone { return sprintf '+1555%07d', ++$n }

sub counter {
    return psql("SELECT COALESCE(sum(contacts), 0) FROM tenant_counters"
                . " WHERE tenant_id = '$_[0]'");
}
sub rows {
    return psql("SELECT count(*) FROM contacts WHERE tenant_id = '$_[0]'");
}
sub events {
    my ($tid, $type) = @_;
    return psql("SELECT count(*) FROM domain_events"
                . " WHERE tenant_id = '$tid' AND type = '$type'");
}

sub csv_post {
    my ($token, $csv, %o) = @_;
    return api($t, 'POST', '/api/v1/contacts/import', raw => $csv,
               token => $token,
               headers => { 'Content-Type' => $o{type} // 'text/csv' },
               timeout => 30);
}

# RFC 4180 records of a CSV text, as arrays of fields
sub csv_rows {
    my ($text) = @_;
    my (@rows, @f, $cur, $q);
    $cur = ''; @f = ();
    my $i = 0;
    while ($i < length $text) {
        my $c = substr($text, $i++, 1);
        if ($q) {
            if ($c eq '"') {
                if (substr($text, $i, 1) eq '"') { $cur .= '"'; $i++ }
                else { $q = 0 }
            } else { $cur .= $c }
        } elsif ($c eq '"') { $q = 1 }
        elsif ($c eq ',') { push @f, $cur; $cur = '' }
        elsif ($c eq "\r") { }
        elsif ($c eq "\n") {
            push @f, $cur; push @rows, [@f]; @f = (); $cur = '';
        }
        else { $cur .= $c }
    }
    push @rows, [@f, $cur] if @f || length $cur;
    return @rows;
}

my ($tok, $tid) = tenant('acme');
my ($tok2, $tid2) = tenant('rival');

# --- create, read, update, delete
my $p1 = phone();
my $r = api($t, 'POST', '/api/v1/contacts', token => $tok, body => {
    phone => $p1, name => 'Ann Lee', email => 'ann@acme.test',
    tags => [qw(VIP Lead VIP)], customFields => { company => 'Acme' },
    optedIn => JSON::PP::true });
is($r->{status}, 201, 'create: 201');
my $c1 = $r->{json};
ok($c1->{id}, 'with an id');
is_deeply([ @$c1{qw(phone name email optedIn)} ],
          [ $p1, 'Ann Lee', 'ann@acme.test', JSON::PP::true ],
          'phone, name, email, optedIn as given');
is_deeply($c1->{tags}, [qw(VIP Lead)], 'tags: each once, in order');
is_deeply($c1->{customFields}, { company => 'Acme' }, 'customFields');
ok($c1->{createdAt} && $c1->{updatedAt}, 'createdAt, updatedAt');
ok(exists $c1->{avatarUrl}, 'avatarUrl (null)');
is(counter($tid), 1, 'the counter counts it');

# numbers in customFields keep their text (the body goes to jsonb as sent)
$r = api($t, 'POST', '/api/v1/contacts', token => $tok,
         raw => '{"phone":"' . phone() . '","customFields":{"score":0.1,'
              . '"price":1.10,"big":1234567890123456789}}');
is($r->{status}, 201, 'create with numbers in customFields');
is(psql("SELECT custom_fields::text FROM contacts"
        . " WHERE id = '$r->{json}{id}'"),
   '{"big": 1234567890123456789, "price": 1.10, "score": 0.1}',
   '... stored exactly as sent (no binary floating point on the way)');
my $c2 = $r->{json};

$r = api($t, 'GET', "/api/v1/contacts/$c1->{id}", token => $tok);
is($r->{status}, 200, 'read: 200');
is_deeply($r->{json}, $c1, 'read gives what create gave');

$r = api($t, 'PATCH', "/api/v1/contacts/$c1->{id}", token => $tok, body => {
    name => 'Ann Smith', email => undef, customFields => { city => 'Paris' },
    tags => [qw(Lead Gold)] });
is($r->{status}, 200, 'update: 200');
is($r->{json}{name}, 'Ann Smith', 'name replaced');
ok(!defined $r->{json}{email}, 'null clears email');
is_deeply($r->{json}{customFields}, { city => 'Paris' },
          'customFields replaced whole');
is_deeply($r->{json}{tags}, [qw(Lead Gold)], 'tags replaced');
is($r->{json}{phone}, $p1, 'what was not sent is kept');
is(psql("SELECT string_agg(type || ':' || (payload->>'tag'), ',' ORDER BY id)"
        . " FROM domain_events WHERE tenant_id = '$tid'"
        . " AND payload->>'contactId' = '$c1->{id}' AND type LIKE 'tag_%'"),
   'tag_added:Gold,tag_removed:VIP', 'tag_added / tag_removed events');

$r = api($t, 'PATCH', "/api/v1/contacts/$c1->{id}", token => $tok,
         body => { phone => $c2->{phone} });
is($r->{status}, 409, "update to another contact's phone: 409");
is($r->{json}{message}, 'phone already exists', '... and why');

$r = api($t, 'DELETE', "/api/v1/contacts/$c2->{id}", token => $tok);
is($r->{status}, 200, 'delete: 200');
is($r->{json}{id}, $c2->{id}, '... answers the deleted contact');
$r = api($t, 'GET', "/api/v1/contacts/$c2->{id}", token => $tok);
is($r->{status}, 404, 'deleted: 404');
is($r->{json}{message}, 'Contact not found', '... Contact not found');
$r = api($t, 'DELETE', "/api/v1/contacts/$c2->{id}", token => $tok);
is($r->{status}, 404, 'delete again: 404');
is(counter($tid), 1, 'the counter went down once');
is(events($tid, 'contact_created'), 2, 'a contact_created event per create');
is(events($tid, 'contact_deleted'), 1, 'a contact_deleted event');

# --- bad input: 400 with every reason, nothing written
my $before = rows($tid);
my %bad = (
    'malformed JSON' => [ raw => '{"phone": ', 400, qr/Invalid JSON/ ],
    'not an object' => [ raw => '["+15551234567"]', 400,
        qr/the body must be a JSON object/ ],
    'no phone' => [ body => { name => 'X' }, 400,
        qr/phone should not be empty/ ],
    'non-E.164 phone' => [ body => { phone => '555-1234' }, 400,
        qr/phone must be E\.164 \(\+ and 8 to 15 digits\)/ ],
    'leading zero' => [ body => { phone => '+0123456789' }, 400,
        qr/phone must be E\.164/ ],
    'unknown field' => [ body => { phone => phone(), isVip => 1 }, 400,
        qr/property isVip should not exist/ ],
    'wrong types' => [ body => { phone => 15551234567, name => [],
        tags => 'VIP', customFields => [], optedIn => 'yes', email => 5 },
        400, qr/phone\ must\ be\ a\ string.*name\ must\ be\ a\ string
                .*email\ must\ be\ a\ string.*tags\ must\ be\ an\ array
                .*customFields\ must\ be\ an\ object
                .*optedIn\ must\ be\ a\ boolean\ value/x ],
    'bad email' => [ body => { phone => phone(), email => 'not-an-email' },
        400, qr/email must be an email/ ],
    'long name' => [ body => { phone => phone(), name => 'x' x 201 }, 400,
        qr/name must be shorter than or equal to 200 characters/ ],
    'empty name' => [ body => { phone => phone(), name => '' }, 400,
        qr/name must be longer than or equal to 1 characters/ ],
    '51 tags' => [ body => { phone => phone(),
                             tags => [ map { "t$_" } 1 .. 51 ] },
        400, qr/tags must contain no more than 50 elements/ ],
    'long tag' => [ body => { phone => phone(), tags => [ 'x' x 51 ] }, 400,
        qr/each value in tags must be 1 to 50 characters/ ],
    'empty tag' => [ body => { phone => phone(), tags => [ '' ] }, 400,
        qr/each value in tags must be 1 to 50 characters/ ],
    'tag with ;' => [ body => { phone => phone(), tags => [ 'a;b' ] }, 400,
        qr/without ';', '\|'/ ],
    'non-string tag' => [ body => { phone => phone(), tags => [ 1 ] }, 400,
        qr/each value in tags must be a string/ ],
    'nested customFields' => [ body => { phone => phone(),
        customFields => { a => { b => 1 } } }, 400,
        qr/customFields values must be strings, numbers, booleans or null/ ],
    'reserved customFields key' => [ body => { phone => phone(),
        customFields => { Phone => 'x' } }, 400,
        qr/customFields key Phone is reserved/ ],
    '101 customFields' => [ body => { phone => phone(),
        customFields => { map { ("k$_" => 1) } 1 .. 101 } }, 400,
        qr/customFields must have at most 100 keys/ ],
    'bad avatarUrl' => [ body => { phone => phone(), avatarUrl => 'ftp://x' },
        400, qr/avatarUrl must be a URL address/ ],
    'duplicate phone' => [ body => { phone => $p1 }, 409,
        qr/^"phone already exists"$/ ],
);
for my $case (sort keys %bad) {
    my ($kind, $payload, $status, $re) = @{ $bad{$case} };
    my $res = api($t, 'POST', '/api/v1/contacts', $kind => $payload,
                  token => $tok);
    is($res->{status}, $status, "create, $case: $status");
    like(json_of($res->{json}{message}), $re, "create, $case: says why");
}
$r = api($t, 'POST', '/api/v1/contacts', token => $tok,
         raw => '{"phone":"' . phone() . '","name":"' . ("\xc3\xa9" x 200)
              . '"}');
is($r->{status}, 201, 'a name of 200 two-byte characters is fine');
$before++;
is(rows($tid), $before, 'nothing of the refused creates was written');
is(counter($tid), $before, '... nor counted');

$r = api($t, 'PATCH', "/api/v1/contacts/$c1->{id}", token => $tok,
         body => { phone => 'nope', bogus => 1 });
is($r->{status}, 400, 'update, bad phone and unknown field: 400');
like(json_of($r->{json}{message}),
     qr/property bogus should not exist.*phone must be E\.164/,
     '... both said');
$r = api($t, 'GET', '/api/v1/contacts/not-a-uuid', token => $tok);
is($r->{status}, 400, 'a malformed id: 400');

$r = api($t, 'POST', '/api/v1/contacts', token => $tok,
         raw => '{"phone":"' . ('9' x (2 * 1024 * 1024)) . '"}');
is($r->{status}, 413, 'a 2 MB body: 413');
is($r->{json}{statusCode}, 413, '... in the JSON error shape');

$r = api($t, 'GET', '/api/v1/contacts', token => $root->{accessToken});
is($r->{status}, 403, 'a superadmin (no tenant): 403');
$r = api($t, 'GET', '/api/v1/contacts');
is($r->{status}, 401, 'no token: 401');

# --- tenant isolation: another tenant's id is not found
my $id1 = $c1->{id};
for my $req ([ 'GET', "/api/v1/contacts/$id1" ],
             [ 'PATCH', "/api/v1/contacts/$id1", { name => 'Stolen' } ],
             [ 'POST', "/api/v1/contacts/$id1/tags", { tags => ['X'] } ],
             [ 'DELETE', "/api/v1/contacts/$id1/tags/Gold" ],
             [ 'DELETE', "/api/v1/contacts/$id1" ]) {
    my ($m, $path, $body) = @$req;
    $r = api($t, $m, $path, token => $tok2, $body ? (body => $body) : ());
    is($r->{status}, 404, "other tenant: $m $path: 404");
    is($r->{json}{message}, 'Contact not found', '... Contact not found');
}
$r = api($t, 'GET', "/api/v1/contacts/$id1", token => $tok);
is($r->{json}{name}, 'Ann Smith', 'the contact is untouched');
is_deeply($r->{json}{tags}, [qw(Lead Gold)], '... tags too');
$r = api($t, 'GET', '/api/v1/contacts', token => $tok2);
is_deeply([ $r->{json}{total}, scalar @{ $r->{json}{data} } ], [ 0, 0 ],
          "the other tenant lists none of them");
$r = api($t, 'POST', '/api/v1/contacts', token => $tok2,
         body => { phone => $p1 });
is($r->{status}, 201, 'a phone is unique per tenant, not across them');

# --- tags
$r = api($t, 'POST', "/api/v1/contacts/$id1/tags", token => $tok,
         body => { tags => [ 'VIP', 'Gold', 'Big Fish', 'VIP' ] });
is($r->{status}, 200, 'add tags: 200');
is_deeply($r->{json}{tags}, [ 'Lead', 'Gold', 'VIP', 'Big Fish' ],
          'new ones appended, each once');
my $added = "SELECT string_agg(payload->>'tag', ',' ORDER BY id)"
          . " FROM domain_events WHERE tenant_id = '$tid'"
          . " AND type = 'tag_added' AND payload->>'contactId' = '$id1'";
is(psql($added), 'Gold,VIP,Big Fish', 'one tag_added event per new tag');
$r = api($t, 'POST', "/api/v1/contacts/$id1/tags", token => $tok,
         body => { tags => [ 'VIP' ] });
is_deeply($r->{json}{tags}, [ 'Lead', 'Gold', 'VIP', 'Big Fish' ],
          'adding a tag it has: unchanged');
is(psql($added), 'Gold,VIP,Big Fish', '... and no event');
$r = api($t, 'DELETE', "/api/v1/contacts/$id1/tags/Big%20Fish",
         token => $tok);
is($r->{status}, 200, 'remove a tag (percent-encoded): 200');
is_deeply($r->{json}{tags}, [ 'Lead', 'Gold', 'VIP' ], '... removed');
$r = api($t, 'DELETE', "/api/v1/contacts/$id1/tags/Nope", token => $tok);
is($r->{status}, 200, 'remove a tag it does not have: 200, unchanged');
is(psql("SELECT count(*) FROM domain_events WHERE tenant_id = '$tid'"
        . " AND type = 'tag_removed' AND payload->>'tag' = 'Big Fish'"),
   1, 'one tag_removed event');
$r = api($t, 'POST', "/api/v1/contacts/$id1/tags", token => $tok,
         body => { tags => [ map { "x$_" } 1 .. 48 ] });
is($r->{status}, 400, 'past 50 tags: 400');
is($r->{json}{message}, 'a contact has at most 50 tags', '... and why');
$r = api($t, 'POST', "/api/v1/contacts/$id1/tags", token => $tok,
         body => {});
like(json_of($r->{json}{message}), qr/tags should not be empty/,
     'tags body without tags: 400');

# --- pages, search, tag filter, the total
my ($tokp, $tidp) = tenant('pager');
my @people = ([ 'Alice Smith', 'alice@wonder.test', ['VIP'] ],
              [ 'Bob Jones', 'bob@builder.test', [] ],
              [ 'Carol SMITHERS', 'carol@x.test', ['VIP', 'Lead'] ],
              [ 'Dan 100% Real', 'dan@x.test', [] ],
              [ 'Eve_Under', 'eve@x.test', ['Lead'] ],
              [ 'Frank', undef, ['VIP'] ],
              [ 'Grace', 'grace@smith.test', [] ]);
my @made;
for my $p (@people) {
    $r = api($t, 'POST', '/api/v1/contacts', token => $tokp, body => {
        phone => phone(), name => $p->[0], tags => $p->[2],
        defined $p->[1] ? (email => $p->[1]) : () });
    push @made, $r->{json}{id};
}
is(scalar(grep { defined } @made), 7, '7 contacts made');

my (@seen, $cursor, $pages);
do {
    $r = api($t, 'GET', '/api/v1/contacts?limit=3'
             . ($cursor ? "&cursor=$cursor" : ''), token => $tokp);
    die "page: $r->{status} $r->{body}" unless $r->{status} == 200;
    push @seen, map { $_->{id} } @{ $r->{json}{data} };
    is($r->{json}{total}, 7, 'page ' . ++$pages . ': total 7');
    $cursor = $r->{json}{nextCursor};
} while ($cursor && $pages < 5);
is($pages, 3, '7 by 3: three pages');
is_deeply(\@seen, [ reverse @made ], 'newest first, each once');
ok(!defined $r->{json}{nextCursor}, 'the last page has no nextCursor');

sub names {
    my ($q) = @_;
    my $res = api($t, 'GET', "/api/v1/contacts?$q", token => $tokp);
    return ($res->{status},
            join(',', map { $_->{name} } @{ $res->{json}{data} }),
            $res->{json}{total}, $res->{json}{totalIsCapped});
}
my @s = names('search=smith');
is_deeply(\@s, [ 200, 'Grace,Carol SMITHERS,Alice Smith', 3, JSON::PP::false ],
          'search: name or email, any case; a counted total');
is_deeply([ (names('search=Alice+Smith'))[1] ], [ 'Alice Smith' ],
          'search: + is a space');
is_deeply([ (names('search=%25'))[1, 2] ], [ 'Dan 100% Real', 1 ],
          'search: % is a literal');
is_deeply([ (names('search=_'))[1] ], [ 'Eve_Under' ],
          'search: _ is a literal');
my $ph = substr(api($t, 'GET', "/api/v1/contacts/$made[1]",
                    token => $tokp)->{json}{phone}, 4);
is_deeply([ (names("search=$ph"))[1] ], [ 'Bob Jones' ], 'search: phone');
is_deeply([ (names('tag=VIP'))[1, 2] ],
          [ 'Frank,Carol SMITHERS,Alice Smith', 3 ], 'tag filter');
is_deeply([ (names('tag=VIP&search=smith'))[1, 2] ],
          [ 'Carol SMITHERS,Alice Smith', 2 ], 'tag and search');
is_deeply([ (names('tag=VIP&limit=1'))[1, 2] ], [ 'Frank', 3 ],
          'a filtered page: the total of all matches');
$r = api($t, 'GET', '/api/v1/contacts?tag=VIP&limit=2', token => $tokp);
is(scalar @{ $r->{json}{data} }, 2, 'a filtered walk: 2 on the first page');
$r = api($t, 'GET', "/api/v1/contacts?tag=VIP&limit=2&cursor="
         . $r->{json}{nextCursor}, token => $tokp);
is_deeply([ map { $_->{name} } @{ $r->{json}{data} } ], [ 'Alice Smith' ],
          '... the rest on the second, the filter kept');
ok(!defined $r->{json}{nextCursor}, '... and no nextCursor after it');
$r = api($t, 'GET', '/api/v1/contacts?limit=7', token => $tokp);
is(scalar @{ $r->{json}{data} }, 7, 'a page exactly as long as the list');
ok(!defined $r->{json}{nextCursor}, '... has no nextCursor');
$r = api($t, 'GET', '/api/v1/contacts?limit=6', token => $tokp);
is($r->{json}{data}[5]{id}, $made[1], 'one short of the list: 6 shown');
ok(defined $r->{json}{nextCursor}, '... and a nextCursor to the last');
is((names('limit=0'))[0], 400, 'limit=0: 400');
is((names('limit=101'))[0], 400, 'limit=101: 400');
is((names('cursor=garbage'))[0], 400, 'a forged cursor: 400');

# a deleted cursor row does not break the walk
$r = api($t, 'GET', '/api/v1/contacts?limit=2', token => $tokp);
$cursor = $r->{json}{nextCursor};
api($t, 'DELETE', "/api/v1/contacts/$made[5]", token => $tokp);
$r = api($t, 'GET', "/api/v1/contacts?limit=2&cursor=$cursor", token => $tokp);
is_deeply([ map { $_->{id} } @{ $r->{json}{data} } ], [ @made[4, 3] ],
          'the page after a deleted cursor row');

# concurrent creates: the counter stays exact
my @reqs = map { build_request('POST', '/api/v1/contacts',
                 json_of({ phone => phone(), name => "Burst $_" }),
                 headers => { 'Content-Type' => 'application/json',
                              Authorization => "Bearer $tokp" }) } 1 .. 30;
my @res = $t->parallel_requests(\@reqs, timeout => 20);
is(scalar(grep { $_->{status} == 201 } @res), 30, '30 concurrent creates');
$r = api($t, 'GET', '/api/v1/contacts?limit=1', token => $tokp);
is($r->{json}{total}, 36, 'total: 7 - 1 + 30');
is(rows($tidp), 36, '... the rows');
is(counter($tidp), 36, '... the counter row');
is(events($tidp, 'contact_created'), 37, 'a contact_created per create');

# --- CSV import
my ($toki, $tidi) = tenant('importer');
my @ip = map { phone() } 1 .. 9;
my $csv = join "\r\n",
    'phone,name,email,tags,optedIn,Company,',
    "$ip[0],Ann,ann\@x.test,VIP;Lead,yes,Acme,",                # 2 ok
    "not-a-phone,Bad,,,,,",                                      # 3 phone
    qq{$ip[1],Bo"b,,,,,},                                        # 4 quote
    "$ip[2],Too,many,columns,here,x,y,z",                        # 5 columns
    "$ip[3],Carl,carl\@x,,maybe,,",                              # 6 two errors
    "$ip[0],Dup,,,,,",                                           # 7 duplicate
    "$ip[4],Dee,dee\@x.test,New | Lead|New,0,Globex,",           # 8 ok
    ',,,,,,',                                                    # 9 blank
    '',                                                          # 10 blank
    qq{$ip[5],"Multi\nline",,,,"Initech, Inc",},                 # 11 ok
    "$ip[6],\"=1+2\",,,TRUE,,",                                  # 12 ok
    qq{$ip[7],"Eve};                                             # 13 open
$r = csv_post($toki, $csv);
is($r->{status}, 200, 'import with broken rows: 200');
is_deeply([ @{ $r->{json} }{qw(imported updated failed)} ], [ 4, 0, 6 ],
          '4 imported, 6 failed');
is_deeply([ map { [ $_->{row}, $_->{column} // '' ] } @{ $r->{json}{errors} } ],
          [ [3, 'phone'], [4, 'name'], [5, ''], [6, 'email'], [6, 'optedIn'],
            [7, 'phone'], [13, 'name'] ],
          'errors: row and column of each problem')
    or diag(json_of($r->{json}{errors}));
my %msg = map { ("$_->{row}" . ($_->{column} // '')) => $_->{message} }
          @{ $r->{json}{errors} };
is($msg{'3phone'}, 'phone must be E.164 (+ and 8 to 15 digits)',
   'a bad phone says E.164');
is($msg{'4name'}, 'quote inside an unquoted field', 'an unbalanced quote');
is($msg{5}, 'the row has 8 fields, the header 7', 'too many columns');
is($msg{'7phone'}, 'the phone is already on row 2', 'a phone twice');
is($msg{'13name'}, 'unterminated quoted field', 'a quote left open at the end');
is(rows($tidi), 4, 'the good rows are stored');
is(counter($tidi), 4, '... counted');
is(events($tidi, 'contact_created'), 4, '... with their events');
$r = api($t, 'GET', '/api/v1/contacts?search=dee', token => $toki);
my $dee = $r->{json}{data}[0];
is_deeply([ @$dee{qw(name email optedIn)}, $dee->{tags}, $dee->{customFields} ],
          [ 'Dee', 'dee@x.test', JSON::PP::false, [ 'New', 'Lead' ],
            { Company => 'Globex' } ], 'a row as stored');
$r = api($t, 'GET', '/api/v1/contacts?search=multi', token => $toki);
is($r->{json}{data}[0]{name}, "Multi\nline", 'a quoted line break');
is($r->{json}{data}[0]{customFields}{Company}, 'Initech, Inc',
   'a quoted comma');

# a known phone is updated by its non-empty cells
$r = csv_post($toki, "Phone,Name,Tags,company\n$ip[0],Ann B,Gold,\n");
is_deeply([ @{ $r->{json} }{qw(imported updated failed)} ], [ 0, 1, 0 ],
          're-import: 1 updated');
$r = api($t, 'GET', "/api/v1/contacts?search=$ip[0]", token => $toki);
my $ann = $r->{json}{data}[0];
is_deeply([ $ann->{name}, $ann->{email}, $ann->{tags}, $ann->{customFields} ],
          [ 'Ann B', 'ann@x.test', ['Gold'], { Company => 'Acme' } ],
          'name and tags replaced; empty and absent cells keep the rest');
is(psql("SELECT count(*) FROM domain_events WHERE tenant_id = '$tidi'"
        . " AND type = 'tag_added' AND payload->>'tag' = 'Gold'"),
   1, 'the new tag is a tag_added event');
is(counter($tidi), 4, 'an update is not counted');

# refused whole
my $n0 = rows($tidi);
for my $case (
    [ 'no phone column', "name,email\nAnn,a\@x.test\n", 400,
      qr/no phone column/ ],
    [ 'a header that is not CSV', qq{phone,"name\n}, 400,
      qr/header row is not valid CSV/ ],
    [ 'a column twice', "phone,name,NAME\n$ip[8],a,b\n", 400,
      qr/"NAME" appears twice/ ],
    [ 'empty', '', 400, qr/header row with a phone column is required/ ],
    [ '10,001 rows', join("\n", 'phone',
        map { sprintf '+1666%07d', $_ } 1 .. 10_001), 413,
      qr/more than 10000 rows/ ],
) {
    my ($name, $body, $status, $re) = @$case;
    $r = csv_post($toki, $body);
    is($r->{status}, $status, "import, $name: $status");
    like($r->{json}{message} // '', $re, "... says why");
}
$r = csv_post($toki, '{"phone":"+15551234567"}', type => 'application/json');
is($r->{status}, 415, 'import of JSON: 415');
is(rows($tidi), $n0, 'nothing of the refused files was stored');
$r = csv_post($toki, 'x' x (10 * 1024 * 1024));
is($r->{status}, 413, 'a 10 MB file: 413 (client_max_body_size)');
is($r->{json}{statusCode}, 413, '... in the JSON error shape');

# --- CSV export
$r = api($t, 'POST', '/api/v1/contacts', token => $toki, body => {
    phone => phone(), name => '=HYPERLINK("http://evil.test","x")',
    email => '-x@x.test', tags => [ '-x', 'Lead' ],
    customFields => { Company => '+cmd', score => 7 } });
is($r->{status}, 201, 'a contact made of formulas');
$r = $t->http('GET', '/api/v1/contacts/export', undef,
              headers => { Authorization => "Bearer $toki" });
is($r->{status}, 200, 'export: 200');
like($r->{headers}{'content-type'}, qr{^text/csv}, '... text/csv');
is($r->{headers}{'content-disposition'},
   'attachment; filename="contacts.csv"', '... an attachment');
my $export = $r->{body};
my @recs = csv_rows($export);
is_deeply($recs[0], [qw(phone name email tags optedIn avatarUrl createdAt
                        Company score)], 'the header row');
is(scalar @recs, rows($tidi) + 1, 'a row per contact');
my ($evil) = grep { $_->[1] =~ /HYPERLINK/ } @recs;
is($evil->[1], q{'=HYPERLINK("http://evil.test","x")},
   'a name starting with = gets a leading quote');
is($evil->[2], "'-x\@x.test", '... an email starting with -');
is($evil->[3], "'-x;Lead", '... tags starting with -');
is($evil->[7], "'+cmd", '... a custom field starting with +');
like($evil->[0], qr/^\+1555\d{7}$/, 'an E.164 phone is left as it is');
is($evil->[8], '7', 'a number as its text');
like($export, qr/\r\n\z/, 'records end with CRLF');

# round trip: what was exported imports into another tenant as it was
my ($tokr, $tidr) = tenant('mirror');
$r = csv_post($tokr, $export);
is_deeply([ @{ $r->{json} }{qw(imported updated failed)} ],
          [ rows($tidi), 0, 0 ], 'the export imports whole');
$r = $t->http('GET', '/api/v1/contacts/export', undef,
              headers => { Authorization => "Bearer $tokr" });
my $strip = sub { join "\n", sort map { my @f = @$_; splice @f, 6, 1;
                                         json_of(\@f) } csv_rows(shift) };
is($strip->($r->{body}), $strip->($export),
   'and exports the same (but createdAt)');

$r = $t->http('GET', '/api/v1/contacts/export', undef,
              headers => { Authorization => "Bearer $tok2" });
is(scalar(csv_rows($r->{body})), 2, "an export holds only the tenant's own");

# --- 10,000 rows: the import, the export, a capped total
my ($tokb, $tidb) = tenant('bulk');
my $big = join("\n", 'phone,name,email,tags,city',
               map { sprintf "+1777%07d,Bulk Person %d,p%d\@bulk.test,%s,"
                             . "City %d", $_, $_, $_,
                             ($_ % 10 ? 'Lead' : 'VIP;Lead'), $_ % 50 }
               1 .. 10_000) . "\n";
my $t0 = time;
$r = csv_post($tokb, $big);
my $took = time - $t0;
is_deeply([ @{ $r->{json} }{qw(imported updated failed)} ], [ 10_000, 0, 0 ],
          'import of 10,000 rows');
diag(sprintf 'import of 10,000 rows (%d KB): %.2f s', length($big) / 1024,
     $took);
$t0 = time;
$r = csv_post($tokb, $big);
diag(sprintf 're-import of the same 10,000 rows (updates): %.2f s',
     time - $t0);
is($r->{json}{updated}, 10_000, 're-import: 10,000 updated');
csv_post($tokb, "phone,name\n+17779999999,Bulk Person extra\n");
$t0 = time;
$r = $t->http('GET', '/api/v1/contacts/export', undef,
              headers => { Authorization => "Bearer $tokb" }, timeout => 30);
diag(sprintf 'export of 10,001 contacts (%d KB): %.2f s',
     length($r->{body}) / 1024, time - $t0);
is(scalar(() = $r->{body} =~ /\r\n/g), 10_002, 'export: 10,001 rows');
@s = names_of($tokb, 'search=bulk+person&limit=5');
is_deeply([ @s[0, 1] ], [ 10_000, JSON::PP::true ],
          'a filtered total past 10,000 is capped');
@s = names_of($tokb, 'limit=5');
is_deeply([ @s[0, 1] ], [ 10_001, JSON::PP::false ],
          'the unfiltered total is the counter');
@s = names_of($tokb, 'tag=VIP&limit=5');
is($s[0], 1000, 'a tag filter');

sub names_of {
    my ($token, $q) = @_;
    my $res = api($t, 'GET', "/api/v1/contacts?$q", token => $token);
    return ($res->{json}{total}, $res->{json}{totalIsCapped});
}

# --- the invariant: every tenant's counter is its number of rows
is(psql("SELECT count(*) FROM (SELECT t.id FROM tenants t"
        . " WHERE (SELECT COALESCE(sum(k.contacts), 0) FROM tenant_counters k"
        . " WHERE k.tenant_id = t.id) <> (SELECT count(*) FROM contacts c"
        . " WHERE c.tenant_id = t.id)) x"), 0,
   'every counter equals its rows');

# --- API keys, where the keys resource is there to make them
$r = api($t, 'POST', '/api/v1/api-keys', token => $tok, body => {
    name => 'reader', scopes => [ 'contacts:read' ] });
SKIP: {
    skip 'no API keys resource', 4 unless $r->{status} == 201;
    my $key = $r->{json}{key};
    $r = api($t, 'GET', '/api/v1/contacts', headers => { 'X-Api-Key' => $key });
    is($r->{status}, 200, 'a contacts:read key lists');
    is($r->{json}{total}, counter($tid), "... its tenant's contacts");
    $r = api($t, 'POST', '/api/v1/contacts', headers => { 'X-Api-Key' => $key },
             body => { phone => phone() });
    is($r->{status}, 403, 'it may not create');
    like($r->{json}{message}, qr/contacts:write/, '... missing contacts:write');
}

$t->stop;
no_bad_log($t);

done_testing();
