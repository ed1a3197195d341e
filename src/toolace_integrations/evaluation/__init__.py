"""BFCL through the adapters: data, BFCL's scoring rules, the runner and its report."""
