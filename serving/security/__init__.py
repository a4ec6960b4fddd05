"""Who may call the API: API keys, Secret Manager, rate limits and response hardening."""
