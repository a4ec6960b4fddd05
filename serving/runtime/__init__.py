"""Running models: the handler contract, registry, validation, inference, batching and time budgets. No Flask here."""
