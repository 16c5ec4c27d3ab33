"""Shared runtime of the platform's services."""
