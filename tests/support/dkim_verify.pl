#!/usr/bin/perl
# Verify every DKIM signature of each message file with Perl's Mail::DKIM,
# looking keys up on the DNS server given as HOST PORT, and print one line
# per signature: file, result, domain, selector, algorithm.
use strict;
use warnings;
use Mail::DKIM::Verifier;
use Net::DNS::Resolver;

my ($host, $port, @files) = @ARGV;
die "usage: dkim_verify.pl HOST PORT FILE...\n" unless @files;

Mail::DKIM::DNS::resolver(
    Net::DNS::Resolver->new(nameservers => [$host], port => $port, udp_timeout => 5, tcp_timeout => 5, retry => 1)
);

foreach my $file (@files) {
    open(my $input, "<:raw", $file) or die "cannot open $file: $!\n";
    my $message = do { local $/; <$input> };
    close($input);

    my $verifier = Mail::DKIM::Verifier->new();
    $verifier->PRINT($message);
    $verifier->CLOSE;
    foreach my $signature ($verifier->signatures) {
        printf "%s %s %s %s %s\n", $file, $signature->result, $signature->domain, $signature->selector,
            $signature->algorithm;
    }
}
