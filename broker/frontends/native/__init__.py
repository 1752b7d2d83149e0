"""The native protocol (``docs/protocol.md``): Strata's own clients and the peer brokers."""
