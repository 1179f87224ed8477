"""`bots simulate`: a synthetic learner on which task selectors are compared in seconds."""
