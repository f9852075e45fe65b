"""Readers for data sets on the user's disk: CUB/NABirds, Cars-196, In-shop, class folders, Fashion-MNIST."""
