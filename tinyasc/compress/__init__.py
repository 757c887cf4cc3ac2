"""Model compression: int8 (QAT, post-training), fp16, structured channel pruning, ensembles.

- ``quantize``: the recipes (report 001's QAT, calibration, fp16) over ``tinyasc.modelfile.int8``.
- ``channels``: which channels a network can lose together, and the surgery that removes them.
- ``prune``: iterative L1 filter pruning with fine-tuning after each step.
- ``finetune``: the short Lightning fine-tuning runs both of them use.
- ``ensemble``: averaged or fitted linear combinations of any model files.

Results are model files (``tinyasc.modelfile.format``), scored by the one evaluator.
"""
