"""Training: the shared loop and the trainers (LoRA, embedding, hypernetwork, Dreambooth)."""
