"""Image data: robust reading, hue cropping and the tf.data input pipeline.

Submodules are imported on their own (``from skin_cnn.data.reading import read_image``) so that
reading an image never pulls in TensorFlow.
"""
