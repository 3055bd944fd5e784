"""Built-in wake2vec plugins: initializers."""
