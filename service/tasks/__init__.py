"""The three tasks: preprocess inputs into encoded rows, postprocess row outputs into results."""
