"""The HTTP API: routes, JSON bodies, errors and the request pipeline."""
