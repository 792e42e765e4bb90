"""Test helpers that do not depend on dagster."""
