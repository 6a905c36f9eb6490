"""nlp/transformer: the encoder-decoder Transformer (Vaswani et al. 2017), torch.nn.MultiheadAttention against
keras.layers.MultiHeadAttention. The folder is the unit you copy: see README.md, "Copying this model"."""
