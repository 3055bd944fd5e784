"""Built-in wake2vec plugins, installed as the wake2vec_plugins package."""
