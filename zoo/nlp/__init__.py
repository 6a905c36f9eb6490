"""Natural-language models: sequence-to-sequence translation."""
