"""Local backend: a workspace folder with MLflow on SQLite, subprocess jobs and Optuna sweeps."""
