"""The paper's tables and experiments: numbers from the paper and the code that reproduces them."""
