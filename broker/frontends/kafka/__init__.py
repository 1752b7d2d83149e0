"""The Kafka wire-protocol front-end: a codec (``codec/``) and, over it, the listener."""
