//! OCI adapter for ferry: ingest images, rebuild layers, serve a read-only registry.
