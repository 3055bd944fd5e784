"""Built-in wake2vec plugins: metrics."""
