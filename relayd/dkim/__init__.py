"""DKIM: signing keys, the signer, and verification for `relayd verify`."""
