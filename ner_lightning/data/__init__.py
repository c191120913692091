"""Datasets: the canonical folder reader, ingestion converters, validation and the LightningDataModule."""
