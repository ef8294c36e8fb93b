"""Non-skin cleansing: find the photos in a clinical image set that do not show skin.

Clinical photo folders also hold photos of patient-ID slips, patch-test reading sheets and forms.
This package is the small skin/non-skin CNN that takes them out, kept apart from the main model's
data, training and evaluation code:

* :mod:`skin_cnn.cleanse.nonskin_examples` — draws non-skin example photos to train on (no
  TensorFlow).
* :mod:`skin_cnn.cleanse.classifier` — the model, its own image loading, training on the user's
  own photos and held-out metrics. No trained model ships with the package.
* :mod:`skin_cnn.cleanse.apply` — scores a manifest, shows what would be removed (contact sheet and
  CSV) and splits it into kept, removed and unreadable rows.

The submodules are imported on their own (``from skin_cnn.cleanse.apply import cleanse_frame``),
so drawing examples never loads TensorFlow.
"""
