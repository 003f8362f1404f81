"""The code shown in docs/*.md, one module per example; tests/docs imports and runs them."""
