"""Pipeline steps: one module per stage of the Phase 1 flow."""
