//! Convergence layers for ferry: QUIC, serial modems and the impairment proxy.
