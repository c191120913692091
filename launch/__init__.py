"""Orchestration of ner-lightning jobs on Azure ML or the local backend.

`launch` describes, submits and watches jobs. It never imports torch, lightning or
transformers: the notebook kernel stays light and can never train by accident. It meets the
training package only through command lines, config files, the dataset folder layout and the
names in `ner_lightning.contract` (an import-light module).
"""
