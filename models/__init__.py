"""Pure model code: no HTTP types, no environment reads. Handlers adapt it to the API."""
