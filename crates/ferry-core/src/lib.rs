//! The sans-IO bundle engine: bundles, custody transfer, routing, contact plans and inventory exchange.
