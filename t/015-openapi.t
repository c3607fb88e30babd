# The OpenAPI document (html/openapi.json) names every route of the route
# table (src/api/orbit_api.c) and nothing else; /api/docs serves it.

use strict;
use warnings;
use Test::More;
use JSON::PP;
use Orbit::Test;

my $root = $ENV{ORBIT_ROOT} // '.';

open my $fh, '<', "$root/src/api/orbit_api.c" or die $!;
my $c = do { local $/; <$fh> };
my ($table) = $c =~ /orbit_api_routes\[\] = \{(.*?)\n\};/s;
ok($table, 'found the route table');

my %routes;
while ($table =~ /\{\s*"([A-Z]+)",\s*"([^"]+)"/g) {
    my ($method, $path) = (lc $1, $2);
    $path =~ s/:(\w+)/{$1}/g;
    $routes{"$method $path"} = 1;
}
cmp_ok(scalar keys %routes, '>', 10, 'routes read: ' . scalar keys %routes);

open $fh, '<', "$root/html/openapi.json" or die $!;
my $doc = decode_json(do { local $/; <$fh> });
is($doc->{openapi}, '3.0.3', 'an OpenAPI 3 document');

my %documented;
for my $path (keys %{ $doc->{paths} }) {
    $documented{"$_ $path"} = 1 for keys %{ $doc->{paths}{$path} };
}

my @missing = sort grep { !$documented{$_} } keys %routes;
my @extra = sort grep { !$routes{$_} } keys %documented;
is_deeply(\@missing, [], 'every route is documented') or diag("@missing");
is_deeply(\@extra, [], 'every documented operation is a route') or diag("@extra");

for my $op (sort keys %documented) {
    my ($m, $p) = split / /, $op, 2;
    my $o = $doc->{paths}{$p}{$m};
    ok($o->{summary} && $o->{responses} && @{ $o->{tags} // [] },
       "$op: summary, tags, responses");
}

# the refs all resolve
my $json = encode_json($doc);
my @refs = $json =~ /"\$ref":"#\/components\/schemas\/(\w+)"/g;
my @dangling = grep { !$doc->{components}{schemas}{$_} } @refs;
is_deeply(\@dangling, [], 'every $ref resolves');

# served by nginx, as conf/orbit-dev.conf does it
my $t = orbit_nginx(config => <<"_EOC_");
location = /api/docs { alias $root/html/api-docs.html; default_type text/html; }
location = /api/docs.json { alias $root/html/openapi.json; default_type application/json; }
_EOC_
$t->start;

my $r = $t->http_get('/api/docs');
is($r->{status}, 200, 'GET /api/docs');
like($r->{headers}{'content-type'}, qr{text/html}, 'a page');
like($r->{body}, qr/OrbitDesk API/, 'the viewer');
$r = $t->http_get('/api/docs.json');
is($r->{status}, 200, 'GET /api/docs.json');
is(eval { decode_json($r->{body})->{info}{title} }, 'OrbitDesk API', 'the document');

$t->stop;
no_bad_log($t);

done_testing();
