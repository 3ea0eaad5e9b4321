"""What the harness sends: compliance request shapes, prompt sets, determinism modes."""
