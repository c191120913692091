"""Model pieces: backbone loading, emission head, IOB2-constrained CRF and the LightningModule."""
