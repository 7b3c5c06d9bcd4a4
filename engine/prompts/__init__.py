"""Prompts and networks: A1111 prompt syntax, text conditioning, LoRAs, embeddings, hypernetworks."""
