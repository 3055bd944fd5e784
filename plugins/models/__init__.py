"""Built-in wake2vec plugins: models."""
