"""The values every room shares (ids, amounts, currencies): defined once, checked alike."""
