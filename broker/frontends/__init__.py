"""The broker's front-ends: the doors clients come in by (the Kafka protocol, next to the native one)."""
