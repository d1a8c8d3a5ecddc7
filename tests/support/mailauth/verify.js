// Verify every DKIM signature of each message file with mailauth, an
// implementation independent of dkimpy that supports Ed25519 (RFC 8463),
// looking keys up on the DNS server given as HOST PORT. Prints one line per
// signature: file, result, signing domain, selector, algorithm.
'use strict';

const fs = require('fs');
const dns = require('dns');
const { dkimVerify } = require('mailauth/lib/dkim/verify');

async function main() {
    const [host, port, ...files] = process.argv.slice(2);
    if (!files.length) {
        console.error('usage: node verify.js HOST PORT FILE...');
        process.exit(2);
    }
    const resolver = new dns.promises.Resolver({ timeout: 5000, tries: 1 });
    resolver.setServers([`${host}:${port}`]);
    const resolve = (name, type) => resolver.resolve(name, type);

    for (const file of files) {
        const result = await dkimVerify(fs.readFileSync(file), { resolver: resolve });
        for (const signature of result.results) {
            console.log([file, signature.status.result, signature.signingDomain, signature.selector, signature.algo].join(' '));
        }
    }
}

main().catch(error => {
    console.error(error);
    process.exit(1);
});
