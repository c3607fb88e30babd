#!/usr/bin/perl
# Signed WhatsApp Cloud API webhooks for the inbound benchmark, one per
# line: "<X-Hub-Signature-256>\t<body>".  Each a new message (its own
# wamid) from one of 1,000 customers of the phone-number id, signed with
# META_APP_SECRET of the secrets file.
#   whatsapp-bodies.pl SECRETS_FILE PHONE_NUMBER_ID COUNT

use strict;
use warnings;
use Digest::SHA qw(hmac_sha256_hex);

my ($secrets, $pn, $count) = @ARGV;
die "usage: $0 SECRETS PHONE_NUMBER_ID COUNT\n" unless $count;

open my $fh, '<', $secrets or die "$secrets: $!\n";
my ($key) = map { /^META_APP_SECRET=(.*?)\s*$/ ? $1 : () } <$fh>;
die "no META_APP_SECRET in $secrets\n" unless defined $key;

my $TEMPLATE = '{"object":"whatsapp_business_account","entry":[{"id":"WABA",'
    . '"changes":[{"field":"messages","value":{"messaging_product":'
    . '"whatsapp","metadata":{"display_phone_number":"15550000000",'
    . '"phone_number_id":"%s"},"contacts":[{"profile":{"name":'
    . '"Customer %s"},"wa_id":"%s"}],"messages":[{"from":"%3$s",'
    . '"id":"wamid.bench%s.%d","timestamp":"%d","type":"text",'
    . '"text":{"body":"Hello, where is my order %d?"}}]}}]}]}';

my $run = sprintf '%x%x', time, $$;
my $ts = time;
for my $i (1 .. $count) {
    my $wa = sprintf '1415%07d', $i % 1000;
    my $body = sprintf $TEMPLATE, $pn, $wa, $wa, $run, $i, $ts, $i;
    print 'sha256=', hmac_sha256_hex($body, $key), "\t", $body, "\n";
}
