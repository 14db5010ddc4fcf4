"""The data layer: clip sources (synthetic world, folders, TFDS) and the native-aspect Grain pipeline."""
