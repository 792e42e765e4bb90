"""Dagster wiring only: assets, resources, partitions, IO manager."""
