"""The documents' arrays (../shared/seeds: doc000 on a linear model, doc003 on a Sequential
model), exactly as written there. The one copy: the dataset options doc000_outlier, doc000_clean
and doc003_outlier and the examples' reproductions all read them from here."""

import numpy as np

DOC000_OUTLIER = (np.array([[1], [2], [3], [1000]]), np.array([2, 4, 6, 2000]))   # doc000 example 1
DOC000_CLEAN = (np.array([[1], [2], [3], [4]]), np.array([2, 4, 6, 8]))          # doc000 example 3
DOC003_DATA = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9], [1000, 1000, 1000]])   # doc003 example 1
