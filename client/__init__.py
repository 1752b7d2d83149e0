"""Strata's client side: the record batch format, the wire codec and the client library.

Both the broker and applications import from here; it depends on nothing else in Strata.
"""
