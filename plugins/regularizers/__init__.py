"""Built-in wake2vec plugins: regularizers."""
