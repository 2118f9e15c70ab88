"""What the node trusts: the signed layout and access documents it holds and how it verifies them."""
