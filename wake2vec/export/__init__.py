"""Hand a run on to other runtimes: ``wake2vec export RUN --gguf OUT.gguf`` for llama.cpp
(and what reads GGUF: Ollama, LM Studio), with the lexicon words kept as the ids the run
trained. The Hugging Face folder ``final/model`` is what transformers, vLLM and TGI load."""
