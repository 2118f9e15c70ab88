"""The trust domain of the wire contract: TLS identities and certificates, access keys and their
document, document signatures and request signatures."""
