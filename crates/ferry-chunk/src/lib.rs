//! Content-defined chunking (FastCDC v2020) with BLAKE3 chunk ids, manifests and verified streaming reassembly.
