"""Shared pytest configuration for Strata's tests."""

from tests.compat.options import pytest_addoption  # noqa: F401  (the compat tests' options)
