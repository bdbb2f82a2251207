//! Which digest a tag points to now, asked of its registry.
