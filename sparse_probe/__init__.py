"""sparse-probe: sparse decision layers for debuggable deep networks."""
