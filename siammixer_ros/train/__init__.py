"""Training pipeline for SiamMixer (torch only; never imported by the tracking core or the ROS node).

Modules:
  cache     decode the shared sequences once into per-frame JPEG files (random access in training is cheap)
  data      split, pair sampler (video pairs, still-image pairs, negatives), SiamFC crops, augmentation, labels
  losses    the paper's logistic + triplet loss (Eqs. 1-3) and the distillation term
  teacher   NanoTrack v2 (onnxruntime) as a distillation teacher on the same crops
  trainer   the loop: checkpoints, resume, CSV log, validation, best-checkpoint selection
  cli       ``python -m siammixer_ros.train.cli --config ... --out ...``
"""
