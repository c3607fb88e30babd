#!/usr/bin/env perl
# Run the OrbitDesk test suite: every t/*.t (top level, sorted) through
# TAP::Harness with t/lib on @INC, then every executable in $ORBIT_UNIT_DIR
# (C unit tests printing TAP). Prints a per-file summary and ends with one
# line "N passed, M failed" (individual assertions). Exit 0 iff M == 0.
#
# Usage: perl t/run.pl [FILE_OR_GLOB ...]

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Glob qw(bsd_glob);
use File::Spec ();
use TAP::Harness ();

my $root = dirname(dirname(abs_path(__FILE__)));
chdir $root or die "cannot chdir to $root: $!\n";

my ($tests, $unit, $missing) = select_tests(@ARGV);
if (!@$tests && !@$missing) {
    print "no tests selected\n";
    print "0 passed, 1 failed\n";
    exit 1;
}

my $harness = TAP::Harness->new({
    lib       => ['t/lib'],
    verbosity => -1,
    timer     => 1,
    color     => 0,
    exec      => sub {
        my (undef, $file) = @_;
        return $unit->{$file} ? [$file] : undef;    # undef: run .t with perl
    },
});

my $aggregator = @$tests ? $harness->runtests(@$tests) : undef;

my ($total_pass, $total_fail) = (0, 0);
my $width = 20;
for my $file (@$tests, @$missing) {
    $width = length $file if length $file > $width;
}

print "\n";
printf "%-*s %8s %8s %9s\n", $width, 'file', 'passed', 'failed', 'seconds';
my %ran = map { $_ => 1 } @$tests;
for my $file (@$tests, @$missing) {
    my ($parser) = $ran{$file} ? $aggregator->parsers($file) : ();
    my ($pass, $fail, $secs, $note) = (0, 1, 0, 'not found');
    if ($parser) {
        ($pass, $fail, $note) = count($parser);
        my ($start, $end) = ($parser->start_time, $parser->end_time);
        $secs = $end - $start if defined $start && defined $end;
    }
    $total_pass += $pass;
    $total_fail += $fail;
    printf "%-*s %8d %8d %9.2f%s\n", $width, $file, $pass, $fail, $secs,
        ($note ? "  ($note)" : '');
}
print "\n";
print "$total_pass passed, $total_fail failed\n";
exit($total_fail == 0 ? 0 : 1);

# Assertions passed/failed for one file; a file with problems that no single
# assertion shows (died, bad plan, no plan, parse errors) counts one failure.
sub count {
    my $p = shift;
    my $pass = scalar $p->passed;
    my $fail = scalar $p->failed;
    my @why;
    push @why, 'exit ' . $p->exit if $p->exit;
    push @why, 'signal ' . ($p->wait & 127) if $p->wait & 127;
    push @why, map { "parse error: $_" } $p->parse_errors;
    $fail = 1 if @why && $fail == 0;
    return ($pass, $fail, join('; ', @why));
}

# Files to run: from the arguments (paths or globs), or t/*.t plus the
# executables in $ORBIT_UNIT_DIR.
# Returns (\@files, \%is_unit_executable, \@missing_arguments).
sub select_tests {
    my @args = @_;
    my (@files, %unit, %seen, @missing);
    my $add = sub {
        my $file = shift;
        my $rel = File::Spec->abs2rel(abs_path($file), $root);
        $file = $rel unless $rel =~ m{^\.\./};
        return if $seen{$file}++;
        $unit{$file} = 1 if $file !~ /\.t$/ && -x $file;
        push @files, $file;
    };

    if (@args) {
        for my $arg (@args) {
            my @hits = grep { -f } bsd_glob($arg);
            if (!@hits) {
                warn "no test matches '$arg'\n";
                push @missing, $arg;    # reported as a failed file
                next;
            }
            $add->($_) for sort @hits;
        }
        return (\@files, \%unit, \@missing);
    }

    $add->($_) for sort grep { -f } bsd_glob('t/*.t');
    my $dir = $ENV{ORBIT_UNIT_DIR};
    if (defined $dir && length $dir) {
        if (-d $dir) {
            $add->($_) for sort grep { -f && -x && !/\.t$/ } bsd_glob("$dir/*");
        } else {
            warn "ORBIT_UNIT_DIR=$dir is not a directory\n";
        }
    }
    return (\@files, \%unit, \@missing);
}
