"""nlp/seq2seq: GRU encoder-decoder with Bahdanau attention (Bahdanau, Cho and Bengio 2015).

config.py (standard library), torch_impl.py (torch), keras_impl.py (Keras + torchlike.py) and weights.py
(numpy + weightmap.py) make the model; spec.py registers it with the zoo's harness. README.md says how
to copy the folder into another project.
"""
