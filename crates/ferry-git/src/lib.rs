//! Git adapter for ferry: publish refs as thin packs, apply them at a leaf, serve smart HTTP.
