"""Built-in wake2vec plugins: observers."""
