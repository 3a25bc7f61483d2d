"""What combines training with the rest: `fit` (texts in, a trained adaptor out) and `shrink` (an existing
Chroma collection into a Matryoshka store)."""
