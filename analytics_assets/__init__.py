"""analytics-assets: Dagster assets that turn chatbot logs in NocoDB into analytics."""
