"""The broker's typed core: what every front-end calls (see ``docs/internals.md``)."""
