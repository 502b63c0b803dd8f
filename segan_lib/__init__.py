"""segan_lib: SegAN and SegAN_IO (SegAN-CAT) brain-tumour segmentation, data, training and the transfer study."""

__version__ = "0.1.0"
