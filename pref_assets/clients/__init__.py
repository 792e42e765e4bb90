"""Plain httpx clients (LLM endpoints, Argilla) and the local model server; no dagster."""
