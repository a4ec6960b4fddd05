"""Command-line tools registered on the app (`flask --app main ...`)."""
