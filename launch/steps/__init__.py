"""Pipeline steps whose logic lives outside `launch/pipeline.py`: functions taking the `Pipeline`."""
