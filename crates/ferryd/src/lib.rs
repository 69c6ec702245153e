//! The ferry peer daemon: tokio glue around ferry-core, config, admin API, metrics and discovery.
