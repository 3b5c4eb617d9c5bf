"""Results: running the matrix, its outcomes, and the reports made of them."""
