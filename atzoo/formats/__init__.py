"""Every file atzoo reads or writes, as one typed, versioned model each (the bottom layer)."""
