"""Front-ends: the doors into the broker's typed core (the native protocol, the Kafka protocol).

Each front-end decodes its protocol's requests, calls the core (``strata.broker.core``) and
encodes the answers; no logic that another front-end would need lives here.
"""
