"""Azure ML backend: workspace, infrastructure check and provisioning, assets, job entities."""
