"""Model pieces: backbone loading, heads (softmax, CRF, your own), IOB2-constrained CRF and the LightningModule."""
