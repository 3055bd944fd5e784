"""Built-in wake2vec plugins: injectors."""
