//! Discrete-event link simulator that runs the real ferry engine on a virtual clock.
