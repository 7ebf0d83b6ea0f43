"""Training: contrastive losses (sentence-transformers style nn.Modules) and recipes."""
