"""Reporting: projections of all domain events and the aggregates the federal office reads."""
