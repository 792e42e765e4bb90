"""Pure functions and value types: no dagster, no httpx."""
