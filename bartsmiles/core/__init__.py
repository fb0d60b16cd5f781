"""The core: tokenizer (regex and SentencePiece) with atom alignment, vocabulary, encoding, RDKit
helpers, splits, metrics and file checks.  No torch, no fairseq; everything else builds on it."""
