"""Strata's storage engine: segment files, indexes and the partition log."""
