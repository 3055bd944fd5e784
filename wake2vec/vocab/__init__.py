"""The vocabulary side: reading a study's files, mining and loading lexicons, morphology and
synthetic text, injecting words into a tokenizer and a model, and verifying the result."""
