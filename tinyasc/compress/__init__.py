"""Model compression: int8 quantisation (QAT, post-training), fp16, structured channel pruning.

- ``quantize``: torch.ao FX graph-mode int8 (x86 backend) and fp16 conversion.
- ``channels``: which channels a network can lose together, and the surgery that removes them.
- ``prune``: iterative L1 filter pruning with fine-tuning after each step.
- ``finetune``: the short Lightning fine-tuning runs both of them use.
- ``size``: parameter values and bytes by storage dtype, for float, fp16 and int8 networks.
- ``artifact``: saving and rebuilding compressed models without pickled code.
"""
