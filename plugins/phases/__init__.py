"""Built-in wake2vec plugins: phases."""
