"""Shared pytest configuration for Strata's tests."""
